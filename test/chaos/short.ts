import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { requireService } from "../helpers/services.js";
import {
  type BackendName,
  ChaosEnv,
  DEFAULT_TIMING,
  type EpisodeOutcome,
  type FaultKind,
} from "./harness.js";
import { runPlan, shortPlan } from "./profile.js";

/**
 * The short, seeded chaos profile (CI) of one backend: every fault kind of
 * that backend at least once, against throwaway servers. One file per backend
 * (short-*.test.ts) so each stays well inside the runner's per-file time and
 * two run side by side. Change the seed with TENURE_CHAOS_SEED; every failure
 * prints its replay command.
 */
export function describeShortChaos(
  b: BackendName,
  /** Only these of the backend's short plan (a backend with many faults splits into files). */
  only?: (fault: FaultKind) => boolean,
): void {
  const seed = Number(process.env.TENURE_CHAOS_SEED ?? 20_240_601);
  const plan = shortPlan(seed, [b]).filter((e) => !only || only(e.fault));
  const env = new ChaosEnv();
  after(() => env.close());
  const missing = ChaosEnv.missing(b);
  describe(
    `chaos (short, seed ${seed}): ${b}`,
    requireService(`chaos ${b}`, !missing, missing ?? ""),
    () => {
      it(`${plan.map((e) => e.fault).join(", ")}: all invariants hold`, async (t) => {
        assert.ok(plan.length > 0, `the short plan has no ${b} episode`);
        const outcomes: EpisodeOutcome[] = await runPlan(env, plan, DEFAULT_TIMING);
        for (const o of outcomes) {
          t.diagnostic(
            `${o.fault}: ${o.detail}; overlap ${o.metrics.maxOverlapMs} ms, heal→leader ${o.metrics.healToLeaderMs ?? "none"} ms`,
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
}
