import { describeShortChaos } from "./short.js";

describeShortChaos("redis-sentinel");
