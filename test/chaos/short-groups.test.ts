import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { requireService } from "../helpers/services.js";
import { type BackendName, ChaosEnv, DEFAULT_TIMING } from "./harness.js";
import { groupShortPlan, runPlan } from "./profile.js";

/**
 * The short, seeded group chaos profile: group episodes (64 partitions over
 * 4 members, test/chaos/group-harness.ts) on Redis and SQLite, each a seeded
 * process fault, a store fault and (Redis) a server restart. Change the seed
 * with TENURE_CHAOS_SEED; every failure prints its replay command.
 */
const seed = Number(process.env.TENURE_CHAOS_SEED ?? 20_240_601);
const env = new ChaosEnv();
after(() => env.close());

for (const b of ["redis", "sqlite"] as BackendName[]) {
  const plan = groupShortPlan(seed, [b]);
  const missing = ChaosEnv.missing(b);
  describe(
    `chaos groups (short, seed ${seed}): ${b}`,
    requireService(`chaos ${b}`, !missing, missing ?? ""),
    () => {
      it(`${plan.map((e) => e.fault).join(", ")}: all group invariants hold`, async (t) => {
        assert.ok(plan.length > 0, `the short group plan has no ${b} episode`);
        const outcomes = await runPlan(env, plan, DEFAULT_TIMING);
        for (const o of outcomes)
          t.diagnostic(
            `${o.fault}: ${o.detail}; overlap ${o.metrics.maxOverlapMs} ms, longest unowned ${o.metrics.healToLeaderMs ?? "none"} ms`,
          );
        const failures = outcomes
          .filter((o) => o.violations.length > 0)
          .map((o) => `${o.fault} (${o.detail}): ${o.violations.join("; ")} — replay: ${o.replay}`);
        assert.equal(outcomes.length, plan.length);
        assert.deepEqual(failures, [], failures.join("\n"));
      });
    },
  );
}
