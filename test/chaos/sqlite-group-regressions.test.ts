import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { requireService } from "../helpers/services.js";
import { sqliteFaultsMissing } from "./faults-sqlite.js";
import { ChaosEnv, DEFAULT_TIMING, type EpisodeSpec } from "./harness.js";
import { runPlan } from "./profile.js";

/**
 * Regression seeds of SQLite group episodes (issue 19). Each replays one
 * episode of the long profile exactly (`--replay group:sqlite:FAULT:SEED`):
 * a real SQLite file shared by 4 member processes of a 64-partition group.
 */
const env = new ChaosEnv();
after(() => env.close());
const missing = ChaosEnv.missing("sqlite");

describe(
  "chaos regressions: SQLite groups",
  requireService("chaos sqlite", !missing, missing ?? ""),
  () => {
    const noJump = sqliteFaultsMissing().get("clock-jump");
    it(
      "group:sqlite:clock-jump:2017512979 (the leader's wall clock −64033 s, a 2.49 s window without probes): balanced in time",
      requireService("libfaketime", !noJump, noJump ?? ""),
      async (t) => {
        // The fleet stayed balanced through the jump (no term began or ended), but the time to
        // balance was counted from the jump, so it measured the harness's own 2490 ms window
        // before its first probe: 2511 ms against a bound of 2500 on every replay.
        const spec: EpisodeSpec = {
          backend: "sqlite",
          fault: "clock-jump",
          seed: 2_017_512_979,
          mode: "group",
        };
        const [o] = await runPlan(env, [spec], DEFAULT_TIMING);
        assert.ok(o);
        t.diagnostic(o.detail);
        assert.deepEqual(o.violations, [], `${o.detail} — replay: ${o.replay}`);
      },
    );
  },
);
