import { requireService, SERVICES } from "../helpers/services.js";
import { describeGroupCli } from "./group-scenarios.js";
import { storeAnswers } from "./harness.js";

// A db of its own: Redis list() scans the whole db, and a db shared with other suites'
// (or benches) holding hundreds of thousands of keys makes each membership read take
// longer than this test's 2 s ttl (docs/groups.md, "Measured").
const u = new URL(SERVICES.redis);
u.pathname = "/7";
const url = u.toString();
const up = await storeAnswers(url);
describeGroupCli(
  "redis",
  () => url,
  requireService("Redis", up, `start it on ${url} (bash scripts/services.sh start)`),
);
