import { join } from "node:path";
import { describeCli } from "./scenarios.js";

describeCli("sqlite", (sb) => `sqlite:${join(sb.dir, "leases.db")}`);
