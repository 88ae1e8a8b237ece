import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { requireService } from "../helpers/services.js";
import { ChaosEnv, DEFAULT_TIMING } from "./harness.js";
import { runPlan, shortPlan } from "./profile.js";

/**
 * The short chaos profile's replicated topology: PostgreSQL with an async
 * standby that is promoted after the primary crashed (fault
 * `promote-standby`). A file of its own so the main short profile
 * (short.test.ts) keeps its time; same seed variable.
 */
const SEED = Number(process.env.TENURE_CHAOS_SEED ?? 20_240_601);
const B = "postgres-standby";
const plan = shortPlan(SEED, [B]);

const env = new ChaosEnv();
after(() => env.close());

const missing = ChaosEnv.missing(B);
describe(
  `chaos (short, seed ${SEED}): ${B}`,
  requireService(`chaos ${B}`, !missing, missing ?? ""),
  () => {
    it(`${plan.map((e) => e.fault).join(", ")}: tokens never repeat, fenced writes stay ordered`, async (t) => {
      assert.ok(plan.length > 0, "the short plan has no postgres-standby episode");
      const outcomes = await runPlan(env, plan, DEFAULT_TIMING);
      for (const o of outcomes) {
        t.diagnostic(
          `${o.fault}: ${o.detail}; overlap ${o.metrics.maxOverlapMs} ms (bound one ttl), heal→leader ${o.metrics.healToLeaderMs ?? "none"} ms`,
        );
      }
      const failures = outcomes
        .filter((o) => o.violations.length > 0)
        .map((o) => `${o.fault} (${o.detail}): ${o.violations.join("; ")} — replay: ${o.replay}`);
      assert.equal(outcomes.length, plan.length);
      assert.deepEqual(failures, [], failures.join("\n"));
    });
  },
);
