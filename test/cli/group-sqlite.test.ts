import { join } from "node:path";
import { describeGroupCli } from "./group-scenarios.js";

describeGroupCli("sqlite", (sb) => `sqlite:${join(sb.dir, "leases.db")}`);
