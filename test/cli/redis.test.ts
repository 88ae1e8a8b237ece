import { requireService, SERVICES } from "../helpers/services.js";
import { storeAnswers } from "./harness.js";
import { describeCli } from "./scenarios.js";

const url = SERVICES.redis;
const up = await storeAnswers(url);
describeCli(
  "redis",
  () => url,
  requireService("Redis", up, `start it on ${url} (bash scripts/services.sh start)`),
);
