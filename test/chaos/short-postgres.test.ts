import { describeShortChaos } from "./short.js";

describeShortChaos("postgres");
