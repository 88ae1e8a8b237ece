/**
 * The long profile of the replication example (npm run replication:long):
 * the faults of the end-to-end test, cycled for a while, with figures.
 *   npm run replication:long -- [--minutes 5] [--tx-per-second 100] [--writers 1]
 *     [--faults kill,stall,cut,restart|none] [--cli] [--json]
 * (`--cli`: each process is `tenure run … -- node main.js`.)
 */
import { parseArgs } from "node:util";
import { type FaultKind, type FaultRecord, runScenario } from "./scenario.js";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "5" },
    "tx-per-second": { type: "string", default: "100" },
    "ttl-ms": { type: "string", default: "3000" },
    "settle-ms": { type: "string", default: "5000" },
    json: { type: "boolean", default: false },
    cli: { type: "boolean", default: false },
    writers: { type: "string", default: "1" },
    faults: { type: "string", default: "kill,stall,cut,restart" },
  },
});
const minutes = Number(values.minutes);
const tps = Number(values["tx-per-second"]);
const ttlMs = Number(values["ttl-ms"]);
const settleMs = Number(values["settle-ms"]);
const writers = Number(values.writers);
const kinds: readonly string[] = ["kill", "stall", "cut", "restart"];
const faults = (values.faults === "none" ? [] : values.faults.split(",")) as FaultKind[];
if (faults.some((f) => !kinds.includes(f)) || !Number.isInteger(writers) || writers < 1) {
  console.error("--faults is a comma list of kill, stall, cut, restart (or none); --writers ≥ 1");
  process.exit(64);
}
for (const [k, v] of Object.entries({ minutes, tps, ttlMs, settleMs })) {
  if (!Number.isFinite(v) || v < 0) {
    console.error(`--${k} must be a non-negative number`);
    process.exit(64);
  }
}

const r = await runScenario({
  mode: values.cli ? "cli" : "elector",
  faults,
  writers,
  durationMs: minutes * 60_000,
  txPerSecond: tps,
  ttlMs,
  settleMs,
  say: values.json ? () => {} : (s) => console.log(`${new Date().toISOString()} ${s}`),
});
if (values.json) {
  console.log(JSON.stringify(r, null, 1));
} else {
  const pct = (xs: number[], p: number) =>
    xs.length
      ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]
      : 0;
  const byKind = new Map<string, FaultRecord[]>();
  for (const f of r.faults) byKind.set(f.kind, [...(byKind.get(f.kind) ?? []), f]);
  console.log(
    `\nrun: ${(r.elapsedMs / 1000).toFixed(0)} s, writer ${r.writer.committed} transactions / ${r.writer.changes} changes (${r.writer.errors} failed during faults)`,
  );
  const streamS = (r.elapsedMs - r.drainMs) / 1000;
  console.log(
    `applied: ${r.appliedTransactions} transactions, ${r.appliedChanges} changes (${(r.appliedChanges / streamS).toFixed(0)} changes/s over the run)`,
  );
  console.log(
    `terms that committed: ${r.terms}; refused stale batches: ${r.fencedBatches}; slot takeovers: ${r.takeovers}`,
  );
  for (const [kind, fs] of byKind) {
    const ms = fs.map((f) => f.resumeMs);
    console.log(
      `  ${kind.padEnd(8)} ×${fs.length}  time to resume p50 ${pct(ms, 0.5)} ms, max ${Math.max(...ms)} ms`,
    );
  }
  console.log(
    `drain ${r.drainMs} ms; slot caught up: ${r.slotCaughtUp}; lag metric after drain ${r.lagMetric} bytes`,
  );
  console.log(
    `checks: mismatched rows ${r.mismatchedRows}, wrong apply counts ${r.wrongApplyCounts}, LSN regressions ${r.lsnRegressions}, token regressions ${r.tokenRegressions}`,
  );
  console.log(
    `processes: unexpected exits ${JSON.stringify(r.unexpectedExits)}, final exit codes ${JSON.stringify(r.finalExitCodes)}; logs: max ${r.maxLogLines} lines, most repeated ${JSON.stringify(r.maxRepeats)}`,
  );
}
const ok =
  r.mismatchedRows === 0 &&
  r.wrongApplyCounts === 0 &&
  r.lsnRegressions === 0 &&
  r.tokenRegressions === 0 &&
  r.slotCaughtUp &&
  (r.fencedBatches >= 1 || !faults.includes("stall")) &&
  r.unexpectedExits.length === 0 &&
  r.strayLines.length === 0;
process.exit(ok ? 0 : 1);
