import { requireService, SERVICES } from "../helpers/services.js";
import { storeAnswers } from "./harness.js";
import { describeCli } from "./scenarios.js";

const url = SERVICES.postgres;
const up = await storeAnswers(url);
describeCli(
  "postgres",
  () => url,
  requireService("PostgreSQL", up, `start it on ${url} (bash scripts/services.sh start)`),
);
