import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { openStore } from "../../src/index.js";
import { requireService } from "../helpers/services.js";
import {
  BACKENDS,
  type BackendName,
  ChaosEnv,
  DEFAULT_TIMING,
  type EpisodeOutcome,
} from "./harness.js";
import { runPlan, shortPlan } from "./profile.js";

/**
 * The short, seeded chaos profile (CI): every backend, every fault kind at
 * least once, against throwaway servers. Change the seed with
 * TENURE_CHAOS_SEED; every failure prints its replay command.
 */
const SEED = Number(process.env.TENURE_CHAOS_SEED ?? 20_240_601);
const plan = shortPlan(SEED, BACKENDS);

/**
 * Known issues found by this suite and reported to the owners; such an
 * episode is marked `todo` (visible in the output) instead of failing CI.
 * Each entry names the backend, the fault detail and why.
 */
const KNOWN: { backend: BackendName; detail: RegExp; why: string }[] = [
  {
    backend: "redis",
    detail: /restart/,
    why: "open bug (issue 6): an unfenced overlap of 10–130 ms after a Redis SIGKILL+restart; fenced writes stay ordered",
  },
];

async function storeBuilt(b: BackendName): Promise<boolean> {
  if (b !== "etcd") return true;
  try {
    const s = await openStore("etcd://127.0.0.1:1");
    await s.close();
    return true;
  } catch (e) {
    return !/not built yet/.test((e as Error).message);
  }
}

const env = new ChaosEnv();
after(() => env.close());

for (const b of BACKENDS) {
  const missing = ChaosEnv.missing(b);
  const built = await storeBuilt(b);
  const opts = built
    ? requireService(`chaos ${b}`, !missing, missing ?? "")
    : { skip: `the ${b} store is not built yet` };
  describe(`chaos (short, seed ${SEED}): ${b}`, opts, () => {
    const episodes = plan.filter((p) => p.backend === b);
    it(`${episodes.map((e) => e.fault).join(", ")}: all invariants hold`, async (t) => {
      const outcomes: EpisodeOutcome[] = await runPlan(env, episodes, DEFAULT_TIMING);
      const failures: string[] = [];
      for (const o of outcomes) {
        const known = KNOWN.find(
          (k) =>
            k.backend === o.backend && (k.detail.test(o.detail) || k.detail.test(String(o.fault))),
        );
        const msg = `${o.backend}/${o.fault} (${o.detail}): ${o.violations.join("; ")} — replay: ${o.replay}`;
        if (o.violations.length === 0) continue;
        if (known) t.diagnostic(`known issue: ${known.why}: ${msg}`);
        else failures.push(msg);
      }
      assert.equal(outcomes.length, episodes.length);
      assert.deepEqual(failures, [], failures.join("\n"));
    });
  });
}
