/**
 * Running the simulation: one world per seed, many worlds per run, and the
 * shrinker that turns a failing tape into a small one that fails the same way.
 */
import type { Violation, ViolationKind } from "./checker.js";
import { Source } from "./source.js";
import { type FaultKind, type Tenure, World, type WorldStats } from "./world.js";

export interface WorldSpec {
  readonly seed: number;
  readonly steps: number;
  /** Replays this tape instead of drawing from the seed's PRNG (0 after its end). */
  readonly tape?: readonly number[];
  readonly faults?: readonly FaultKind[];
}

export interface WorldResult {
  readonly spec: WorldSpec;
  readonly processes: number;
  readonly violation: Violation | null;
  readonly stats: WorldStats;
  readonly tape: readonly number[];
  readonly faultDraws: readonly number[];
  readonly recent: readonly string[];
}

/** Runs one world. The number of processes (2–5) is the first draw of its tape. */
export async function runWorld(t: Tenure, spec: WorldSpec): Promise<WorldResult> {
  const src = new Source(spec.seed, spec.tape);
  const processes = 2 + src.int(4);
  const w = new World(t, src, processes, spec.faults ? { faults: spec.faults } : {});
  const violation = await w.run(spec.steps);
  return {
    spec,
    processes,
    violation,
    stats: w.stats,
    tape: src.tape,
    faultDraws: src.faultDraws,
    recent: w.checker.recent(),
  };
}

/** The seed of world `k` of a run with seed `seed`. */
export function worldSeed(seed: number, k: number): number {
  return (seed + Math.imul(k, 0x9e3779b1)) >>> 0;
}

export interface RunSummary {
  readonly seed: number;
  readonly worlds: number;
  readonly steps: number;
  readonly simMs: number;
  readonly wallMs: number;
  readonly faults: Record<string, number>;
  readonly totals: Omit<WorldStats, "faults" | "steps" | "simMs">;
  readonly failure: WorldResult | null;
}

/** Runs worlds of `stepsPerWorld` steps until `steps` steps ran or one fails. */
export async function runMany(
  t: Tenure,
  opts: {
    seed: number;
    steps: number;
    stepsPerWorld?: number;
    faults?: readonly FaultKind[];
    onWorld?: (r: WorldResult, k: number) => void;
  },
): Promise<RunSummary> {
  const per = opts.stepsPerWorld ?? 5_000;
  const t0 = performance.now();
  let steps = 0;
  let simMs = 0;
  let k = 0;
  const faults: Record<string, number> = {};
  const totals = {
    episodes: 0,
    livenessChecks: 0,
    elections: 0,
    grants: 0,
    trustChecks: 0,
    fencedAccepted: 0,
    fencedRejected: 0,
  };
  let failure: WorldResult | null = null;
  while (steps < opts.steps) {
    const spec: WorldSpec = {
      seed: worldSeed(opts.seed, k),
      steps: Math.min(per, opts.steps - steps),
      ...(opts.faults ? { faults: opts.faults } : {}),
    };
    const r = await runWorld(t, spec);
    steps += r.stats.steps;
    simMs += r.stats.simMs;
    for (const [f, n] of Object.entries(r.stats.faults)) faults[f] = (faults[f] ?? 0) + n;
    for (const key of Object.keys(totals) as (keyof typeof totals)[]) totals[key] += r.stats[key];
    opts.onWorld?.(r, k);
    k += 1;
    if (r.violation) {
      failure = r;
      break;
    }
    if (r.stats.steps === 0) break;
  }
  return {
    seed: opts.seed,
    worlds: k,
    steps,
    simMs,
    wallMs: performance.now() - t0,
    faults,
    totals,
    failure,
  };
}

export interface ShrinkResult {
  readonly original: WorldResult;
  readonly shrunk: WorldResult;
  readonly attempts: number;
}

/**
 * Step budgets below are the failing step + 1: a violation found while the
 * clock advances (a service still running) is seen when the next event is
 * fetched, after the last counted step.
 *
 * Shrinks a failing world: keeps only the tape the failure consumed, then
 * (1) removes injected faults one at a time (their draws set to 0), (2) zeroes
 * ever smaller blocks of the other draws (shortest delays, first-ready order,
 * no jitter), (3) cuts the step budget to the failing step. A candidate is
 * kept when it fails with the same kind of violation. Bounded by `budgetMs`.
 */
export async function shrink(
  t: Tenure,
  failing: WorldResult,
  opts: { budgetMs?: number; maxAttempts?: number } = {},
): Promise<ShrinkResult> {
  const kind: ViolationKind = failing.violation!.kind;
  const deadline = performance.now() + (opts.budgetMs ?? 20_000);
  const maxAttempts = opts.maxAttempts ?? 400;
  let attempts = 0;
  let best = failing;
  const budgetLeft = () => attempts < maxAttempts && performance.now() < deadline;
  const tryTape = async (tape: number[], steps: number): Promise<boolean> => {
    attempts += 1;
    const r = await runWorld(t, { ...failing.spec, steps, tape });
    if (r.violation?.kind === kind) {
      best = r;
      return true;
    }
    return false;
  };
  let tape = [...best.tape];
  // (1) one fault at a time, last first (later faults rarely cause earlier ones), until no
  // single fault can be removed.
  for (let changed = true; changed && budgetLeft(); ) {
    changed = false;
    for (const at of [...best.faultDraws].reverse()) {
      if (!budgetLeft()) break;
      if (at >= tape.length || tape[at] === 0) continue;
      const cand = [...tape];
      cand[at] = 0;
      if (await tryTape(cand, best.stats.steps + 1)) {
        tape = [...best.tape];
        changed = true;
      }
    }
  }
  // (2) zero blocks of the remaining draws.
  for (let size = Math.max(1, tape.length >> 1); size >= 1 && budgetLeft(); size >>= 1) {
    for (let i = 0; i < tape.length && budgetLeft(); i += size) {
      if (tape.slice(i, i + size).every((v) => v === 0)) continue;
      const cand = [...tape];
      cand.fill(0, i, i + size);
      if (await tryTape(cand, best.stats.steps + 1)) tape = [...best.tape];
    }
    if (size === 1) break;
  }
  return { original: failing, shrunk: best, attempts };
}

/** Faults a world actually injected (its nonzero fault draws). */
export function injectedFaults(r: WorldResult): number {
  return r.faultDraws.filter((at) => r.tape[at] !== 0).length;
}

/** A human report of a failure, with the commands that replay it. */
export function describeFailure(r: WorldResult, tapeFile?: string): string {
  const v = r.violation!;
  const lines = [
    `invariant violated: ${v.message}`,
    `  at simulated ${v.at} ms, step ${r.stats.steps}, ${r.processes} processes, ${injectedFaults(r)} faults injected`,
  ];
  if (r.spec.tape) {
    if (tapeFile) lines.push(`  replay the shrunk schedule: npm run sim -- --replay ${tapeFile}`);
  } else {
    lines.push(
      `  replay exactly: npm run sim -- --seed ${r.spec.seed} --steps ${r.stats.steps + 1} --worlds 1` +
        (r.spec.faults ? ` --faults ${r.spec.faults.join(",")}` : ""),
    );
  }
  lines.push("  recent history:");
  for (const l of r.recent.slice(-40)) lines.push(`    ${l}`);
  return lines.join("\n");
}
