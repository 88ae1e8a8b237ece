/**
 * `npm run sim -- [--steps N] [--seed S] [--worlds K] [--steps-per-world M]
 *                 [--faults a,b] [--mutant NAME] [--replay FILE] [--no-shrink] [--json FILE]`
 *
 * Runs the deterministic simulation and prints steps per second, the fault
 * mix and the result. A failure is shrunk, its tape written to
 * sim-failures/, and both replay commands printed. Exit code 1 on failure.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadMutant, MUTANTS, type MutantName } from "./mutants.js";
import { describeFailure, runMany, runWorld, shrink } from "./run.js";
import { type FaultKind, loadTenure } from "./world.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function num(name: string, def: number): number {
  const v = arg(name);
  if (v === undefined) return def;
  const n = Number(v.replace(/_/g, ""));
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name}: expected a non-negative number, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const mutant = arg("mutant") as MutantName | undefined;
if (mutant !== undefined && !(mutant in MUTANTS)) {
  console.error(`--mutant: one of ${Object.keys(MUTANTS).join(", ")}; got ${mutant}`);
  process.exit(2);
}
const tenure = mutant ? await loadMutant(mutant) : await loadTenure();
const faults = arg("faults")?.split(",") as FaultKind[] | undefined;
const root = process.env.TENURE_REPO_ROOT ?? process.cwd();

const replay = arg("replay");
if (replay) {
  const saved = JSON.parse(readFileSync(replay, "utf8")) as {
    seed: number;
    steps: number;
    tape: number[];
    faults?: FaultKind[];
  };
  const r = await runWorld(tenure, {
    seed: saved.seed,
    steps: saved.steps,
    tape: saved.tape,
    ...(saved.faults ? { faults: saved.faults } : {}),
  });
  if (r.violation) {
    console.log(describeFailure(r));
    process.exit(1);
  }
  console.log(`replay of ${replay}: ${r.stats.steps} steps, no invariant violated`);
  process.exit(0);
}

const seed = num("seed", 1);
const steps = num("steps", 10_000);
const stepsPerWorld = num("steps-per-world", 5_000);
const worlds = arg("worlds") === undefined ? Infinity : num("worlds", 1);
const cap = Number.isFinite(worlds) ? Math.min(steps, worlds * stepsPerWorld) : steps;
let lastPrint = performance.now();
const summary = await runMany(tenure, {
  seed,
  steps: cap,
  stepsPerWorld,
  ...(faults ? { faults } : {}),
  onWorld: (_r, k) => {
    if (performance.now() - lastPrint > 10_000) {
      lastPrint = performance.now();
      console.log(`  … world ${k + 1}`);
    }
  },
});
const perSec = Math.round(summary.steps / (summary.wallMs / 1000));
const mix = Object.entries(summary.faults)
  .sort()
  .map(([k, v]) => `${k} ${v}`)
  .join(", ");
console.log(
  `sim seed ${seed}${mutant ? ` (mutant ${mutant})` : ""}: ${summary.steps} steps in ${summary.worlds} worlds, ` +
    `${(summary.simMs / 1000).toFixed(0)} simulated s, ${(summary.wallMs / 1000).toFixed(1)} s wall, ${perSec} steps/s`,
);
console.log(`  fault mix: ${mix || "none"}`);
const tt = summary.totals;
console.log(
  `  episodes ${tt.episodes}, liveness checks ${tt.livenessChecks}, elections ${tt.elections}, grants ${tt.grants}, ` +
    `trust checks ${tt.trustChecks}, fenced writes accepted ${tt.fencedAccepted} / rejected ${tt.fencedRejected}`,
);
const out = arg("json");
const writeJson = (result: string) => {
  if (out)
    writeFileSync(
      out,
      `${JSON.stringify({ mutant: mutant ?? null, ...summary, failure: undefined, perSec, result }, null, 2)}\n`,
    );
};
if (!summary.failure) {
  console.log("  result: every invariant held after every step");
  writeJson("pass");
  process.exit(0);
}
const f = summary.failure;
console.log(describeFailure(f));
writeJson(`fail: ${f.violation!.message}`);
if (process.argv.includes("--no-shrink")) process.exit(1);
const s = await shrink(tenure, f, { budgetMs: num("shrink-ms", 60_000) });
const dir = join(root, "dist", "sim-failures");
mkdirSync(dir, { recursive: true });
const file = join(dir, `seed-${f.spec.seed}${mutant ? `-${mutant}` : ""}.json`);
writeFileSync(
  file,
  `${JSON.stringify({ seed: f.spec.seed, steps: s.shrunk.stats.steps + 1, faults: f.spec.faults, kind: f.violation!.kind, tape: s.shrunk.tape })}\n`,
);
console.log(
  `shrunk in ${s.attempts} replays: ${s.shrunk.stats.steps} steps (from ${f.stats.steps}), ` +
    `${s.shrunk.faultDraws.filter((a) => s.shrunk.tape[a] !== 0).length} faults (from ${f.faultDraws.filter((a) => f.tape[a] !== 0).length})`,
);
console.log(describeFailure(s.shrunk, file));
process.exit(1);
