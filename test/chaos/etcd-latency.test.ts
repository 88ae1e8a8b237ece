import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { requireService } from "../helpers/services.js";
import { ChaosEnv, DEFAULT_TIMING, type EpisodeSpec } from "./harness.js";
import { runPlan } from "./profile.js";

/**
 * Regression seeds of etcd under latency (issue 19). Each replays one
 * episode of the long profile exactly (`--replay etcd:latency:SEED`).
 */
const env = new ChaosEnv();
after(() => env.close());
const missing = ChaosEnv.missing("etcd");

describe(
  "chaos regressions: etcd under latency",
  requireService("chaos etcd", !missing, missing ?? ""),
  () => {
    it("etcd:latency:557677842 (+152 ms each way for 2.1 s, the leader renewing through it): all invariants hold", async (t) => {
      // With a renewal in one round trip the leader usually keeps its term
      // through this latency (with two it lost it in all 100 latency episodes
      // measured). Whether it does is timing: in one full-suite run on a
      // loaded machine it lost it. So it is reported, not asserted; the store
      // test "a renewal is one round trip" asserts it on a quieter path. This
      // episode checks the invariants while a leader renews across the fault
      // and its heal.
      const spec: EpisodeSpec = { backend: "etcd", fault: "latency", seed: 557_677_842 };
      const [o] = await runPlan(env, [spec], DEFAULT_TIMING);
      assert.ok(o);
      t.diagnostic(
        `${o.detail}: terms ${o.metrics.terms}, heal→leader ${o.metrics.healToLeaderMs} ms`,
      );
      assert.deepEqual(o.violations, [], `${o.detail} — replay: ${o.replay}`);
    });

    it("etcd:latency:1537198409 (the issue's seed, +248 ms each way): all invariants hold", async () => {
      const spec: EpisodeSpec = { backend: "etcd", fault: "latency", seed: 1_537_198_409 };
      const [o] = await runPlan(env, [spec], DEFAULT_TIMING);
      assert.ok(o);
      assert.deepEqual(o.violations, [], `${o.detail} — replay: ${o.replay}`);
    });
  },
);
