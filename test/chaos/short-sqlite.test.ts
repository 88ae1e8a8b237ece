import { describeShortChaos } from "./short.js";

describeShortChaos("sqlite");
