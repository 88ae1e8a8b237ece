import assert from "node:assert/strict";
import { test } from "node:test";
import { missingBinaries } from "../helpers/chaos-servers.js";
import { runScenario } from "./scenario.js";

const missing = missingBinaries().postgres;
if (missing && process.env.CI) throw new Error(`replication test needs PostgreSQL: ${missing}`);

test("replication example: exactly once into the sink across SIGKILL, SIGSTOP, cut connections and a server restart", {
  skip: missing ?? false,
  timeout: 110_000,
}, async () => {
  const r = await runScenario({
    faults: ["kill", "stall", "cut", "restart"],
    txPerSecond: 40,
    ttlMs: 2_000,
    settleMs: 500,
    say: (s) => process.env.TENURE_TEST_VERBOSE && console.log(`# ${s}`),
  });
  const summary = JSON.stringify(r, null, 1);
  // The run did real work, and every fault was followed by progress.
  assert.ok(r.writer.committed > 100, summary);
  assert.deepEqual(
    r.faults.map((f) => f.kind),
    ["kill", "stall", "cut", "restart"],
  );
  assert.ok(r.terms >= 3, `a new term after the kill and after the stall: ${summary}`);
  // Exactly once: the sink equals the source row for row, every live row saw each change once,
  // no source transaction was applied twice and the checkpoints never went back.
  assert.equal(r.mismatchedRows, 0, summary);
  assert.ok(r.sourceRows > 20, summary);
  assert.equal(r.wrongApplyCounts, 0, summary);
  assert.equal(r.lsnRegressions, 0, summary);
  assert.equal(r.tokenRegressions, 0, summary);
  assert.ok(r.appliedChanges >= r.writer.changes, summary);
  assert.ok(r.appliedChanges <= r.writer.changes + 3 * r.writer.errors, summary);
  // The demoted leader's parked batch tried to commit and the fence refused it.
  assert.ok(r.fencedBatches >= 1, summary);
  // The stopped leader's walsender kept the slot busy: the new leader took it over and retried.
  assert.ok(r.takeovers >= 1, summary);
  // The slot caught up with the end of the WAL; its lag is exported.
  assert.equal(r.slotCaughtUp, true, summary);
  assert.ok(r.lagMetric >= 0 && r.lagMetric < 65_536, summary);
  // No process exited on a lost election; all stopped cleanly; logs bounded.
  assert.deepEqual(r.unexpectedExits, [], summary);
  assert.deepEqual(r.finalExitCodes, [0, 0, 0], summary);
  assert.deepEqual(r.strayLines, [], summary);
  assert.ok(r.maxLogLines < 300, summary);
  assert.ok(r.maxRepeats.count < 60, summary);
});

test("replication example under tenure run: the CLI campaigns, the command fences with TENURE_TOKEN", {
  skip: missing ?? false,
  timeout: 110_000,
}, async () => {
  const r = await runScenario({
    mode: "cli",
    faults: ["kill", "stall"],
    txPerSecond: 40,
    ttlMs: 3_000, // --grace is 2/3 of it: room for the command to stop cleanly on a loaded machine
    settleMs: 500,
    say: (s) => process.env.TENURE_TEST_VERBOSE && console.log(`# ${s}`),
  });
  const summary = JSON.stringify(r, null, 1);
  assert.ok(r.writer.committed > 50, summary);
  assert.ok(r.terms >= 3, summary);
  assert.equal(r.mismatchedRows, 0, summary);
  assert.equal(r.wrongApplyCounts, 0, summary);
  assert.equal(r.lsnRegressions, 0, summary);
  assert.equal(r.tokenRegressions, 0, summary);
  // The stopped `tenure run`'s command kept streaming with its stale token: the fence refused it.
  assert.ok(r.fencedBatches >= 1, summary);
  assert.equal(r.slotCaughtUp, true, summary);
  assert.deepEqual(r.unexpectedExits, [], summary);
  assert.deepEqual(r.finalExitCodes, [0, 0, 0], summary);
  assert.deepEqual(r.strayLines, [], summary);
  assert.ok(r.maxLogLines < 300, summary);
});
