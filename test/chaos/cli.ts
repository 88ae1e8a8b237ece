/**
 * The long chaos profile, on demand:
 *   node dist/test/chaos/cli.js [--episodes 1000] [--seed N] [--backends sqlite,redis,…]
 *        [--faults kill-leader,…] [--minutes M] [--concurrency 2] [--short]
 *        [--mode single|group|both] [--report chaos-report.json] [--markdown chaos-report.md]
 *   node dist/test/chaos/cli.js --replay [group:]BACKEND:FAULT:SEED
 * --mode: single-lease episodes, group episodes (test/chaos/group-harness.ts) or both (default).
 * Exits 1 when an episode violated an invariant (each failure prints its replay command).
 */
import { writeFileSync } from "node:fs";
import { GROUP_BACKENDS } from "./group-harness.js";
import {
  ALL_FAULTS,
  BACKENDS,
  type BackendName,
  ChaosEnv,
  DEFAULT_TIMING,
  type EpisodeSpec,
  type FaultKind,
} from "./harness.js";
import {
  buildReport,
  type ChaosMode,
  groupShortPlan,
  longPlan,
  markdown,
  parseReplay,
  runPlan,
  shortPlan,
} from "./profile.js";

function fail(msg: string): never {
  process.stderr.write(`chaos: ${msg}\n`);
  process.exit(64);
}

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith("--")) fail(`--${name} needs a value`);
  return v;
};
const int = (name: string, def: number, min: number): number => {
  const v = opt(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    fail(`--${name} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return n;
};

const known = new Set([
  "episodes",
  "seed",
  "backends",
  "faults",
  "minutes",
  "concurrency",
  "report",
  "markdown",
  "replay",
  "ttl",
  "short",
  "mode",
]);
for (const a of args)
  if (a.startsWith("--") && !known.has(a.slice(2)))
    fail(`unknown option ${a}; accepted: ${[...known].map((k) => `--${k}`).join(" ")}`);

const seed = int("seed", Math.floor(Math.random() * 2 ** 31), 0);
const episodes = int("episodes", 1000, 1);
const minutes = int("minutes", 0, 0);
const concurrency = int("concurrency", 2, 1);
const ttlMs = int("ttl", DEFAULT_TIMING.ttlMs, 100);
const timing = {
  ...DEFAULT_TIMING,
  ttlMs,
  retryMs: Math.max(20, Math.round(ttlMs / 5)),
  tickMs: Math.max(10, Math.round(ttlMs / 10)),
};
const backends = (opt("backends")?.split(",") ?? [...BACKENDS]) as BackendName[];
for (const b of backends)
  if (!BACKENDS.includes(b))
    fail(`--backends: unknown backend ${b}; accepted: ${BACKENDS.join(",")}`);
const faults = opt("faults")?.split(",") as FaultKind[] | undefined;
for (const f of faults ?? [])
  if (!ALL_FAULTS.includes(f))
    fail(`--faults: unknown fault ${f}; accepted: ${ALL_FAULTS.join(",")}`);

// --short stays the single-lease CI profile unless --mode asks for groups.
const mode = (opt("mode") ?? (args.includes("--short") ? "single" : "both")) as ChaosMode;
if (!["single", "group", "both"].includes(mode))
  fail(`--mode must be single, group or both, got ${JSON.stringify(mode)}`);

let plan: EpisodeSpec[];
const replay = opt("replay");
if (replay) {
  const spec = parseReplay(replay);
  if (!spec)
    fail(
      `--replay must be [group:]BACKEND:FAULT:SEED, e.g. redis:blackhole:123 (got ${JSON.stringify(replay)})`,
    );
  plan = [spec];
} else {
  plan = args.includes("--short")
    ? [
        ...(mode === "group" ? [] : shortPlan(seed, backends)),
        ...(mode === "single"
          ? []
          : groupShortPlan(
              seed,
              backends.filter((b) => GROUP_BACKENDS.includes(b)),
            )),
      ].filter((p) => !faults || faults.includes(p.fault))
    : longPlan(seed, episodes, backends, faults, mode);
  if (plan.length === 0) fail("no episode matches --backends and --faults");
}
for (const b of new Set(plan.map((p) => p.backend))) {
  const why = ChaosEnv.missing(b);
  if (why) fail(`backend ${b} cannot run here: ${why}`);
}

const env = new ChaosEnv();
const t0 = Date.now();
let done = 0;
const stopAt = minutes > 0 ? t0 + minutes * 60_000 : undefined;
process.on("SIGINT", () => {
  process.stderr.write("chaos: interrupted, cleaning up\n");
  void env.close().then(() => process.exit(130));
});
try {
  process.stdout.write(
    `chaos: ${plan.length} episode(s), seed ${seed}, ttl ${timing.ttlMs} ms, backends ${backends.join(",")}\n`,
  );
  const outcomes = await runPlan(env, plan, timing, {
    concurrency,
    ...(stopAt ? { deadline: stopAt } : {}),
    onResult: (o) => {
      done += 1;
      const ok = o.violations.length === 0;
      const h = o.metrics.healToLeaderMs;
      process.stdout.write(
        `${ok ? "ok  " : "FAIL"} ${String(done).padStart(4)} ${o.backend}/${o.fault} seed ${o.seed} (${o.detail}) heal→leader ${h === null ? "–" : h.toFixed(0)} ms, overlap ${o.metrics.maxOverlapMs.toFixed(1)} ms, ${o.metrics.writes} writes, ${o.durationMs} ms\n`,
      );
      if (!ok) {
        for (const v of o.violations) process.stdout.write(`       ${v}\n`);
        process.stdout.write(`       replay: ${o.replay}\n`);
        if (o.stderr?.trim())
          process.stdout.write(`       worker stderr: ${o.stderr.trim().slice(0, 2000)}\n`);
      }
    },
  });
  const report = buildReport(outcomes, seed, timing, Date.now() - t0);
  const reportPath = opt("report") ?? "chaos-report.json";
  writeFileSync(reportPath, `${JSON.stringify(report, null, 2)}\n`);
  const md = opt("markdown") ?? reportPath.replace(/\.json$/, "") + ".md";
  const cmd = `node dist/test/chaos/cli.js ${args.join(" ")}`.trim();
  writeFileSync(md, markdown(report, cmd));
  const failed = report.failures.length;
  process.stdout.write(
    `chaos: ${outcomes.length} episodes, ${failed} failed, ${((Date.now() - t0) / 1000).toFixed(0)} s; report ${reportPath}, summary ${md}\n`,
  );
  for (const f of report.failures) process.stdout.write(`  failed: ${f.replay}\n`);
  await env.close();
  process.exit(failed > 0 ? 1 : 0);
} catch (e) {
  process.stderr.write(`chaos: ${(e as Error).stack ?? e}\n`);
  await env.close();
  process.exit(2);
}
