import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { requireService } from "../helpers/services.js";
import { BACKENDS, ChaosEnv, DEFAULT_TIMING, type EpisodeOutcome } from "./harness.js";
import { runPlan, shortPlan } from "./profile.js";

/**
 * The short, seeded chaos profile (CI): every backend, every fault kind at
 * least once, against throwaway servers. Change the seed with
 * TENURE_CHAOS_SEED; every failure prints its replay command.
 */
const SEED = Number(process.env.TENURE_CHAOS_SEED ?? 20_240_601);
const plan = shortPlan(SEED, BACKENDS);

const env = new ChaosEnv();
after(() => env.close());

for (const b of BACKENDS) {
  if (b === "postgres-standby") continue; // its own file (short-standby.test.ts): time bound per file
  const missing = ChaosEnv.missing(b);
  const opts = requireService(`chaos ${b}`, !missing, missing ?? "");
  describe(`chaos (short, seed ${SEED}): ${b}`, opts, () => {
    const episodes = plan.filter((p) => p.backend === b);
    it(`${episodes.map((e) => e.fault).join(", ")}: all invariants hold`, async (t) => {
      const outcomes: EpisodeOutcome[] = await runPlan(env, episodes, DEFAULT_TIMING);
      const failures = outcomes
        .filter((o) => o.violations.length > 0)
        .map(
          (o) =>
            `${o.backend}/${o.fault} (${o.detail}): ${o.violations.join("; ")} — replay: ${o.replay}`,
        );
      for (const o of outcomes) {
        t.diagnostic(
          `${o.backend}/${o.fault}: ${o.detail}; overlap ${o.metrics.maxOverlapMs} ms, heal→leader ${o.metrics.healToLeaderMs ?? "none"} ms`,
        );
      }
      assert.equal(outcomes.length, episodes.length);
      assert.deepEqual(failures, [], failures.join("\n"));
    });
  });
}
