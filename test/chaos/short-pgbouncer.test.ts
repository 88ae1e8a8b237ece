import { describeShortChaos } from "./short.js";

describeShortChaos("pgbouncer");
