import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { CommandRun } from "../../src/cli/child.js";
import { SPAWNED } from "../../src/cli/guard-protocol.js";
import { waitFor } from "../helpers/wait.js";

/**
 * A guard that widens the real guard's one window: it ignores the stop signals
 * (as guard.ts does), says so in a file, and spawns the command only on its
 * first SIGTERM, or after 600 ms without one. A SIGTERM sent to the group
 * before `spawned` therefore never reaches the command.
 */
const SLOW_GUARD = `
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
const [, , , readyFile, cmd, ...args] = process.argv;
let child = null;
const start = () => {
  if (child) return;
  child = spawn(cmd, args, { stdio: "inherit" });
  process.send(${JSON.stringify(SPAWNED)});
  child.on("exit", (code) => process.exit(code ?? 143));
};
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"]) process.on(sig, start);
writeFileSync(readyFile, "");
setTimeout(start, 600);
`;

describe("the command guard and stop()", () => {
  const dir = mkdtempSync(join(tmpdir(), "tenure-child-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const guard = join(dir, "slow-guard.mjs");
  writeFileSync(guard, SLOW_GUARD);

  it("a stop() before the guard has spawned the command still reaches the command with SIGTERM, not the SIGKILL after the grace period", async () => {
    const ready = join(dir, "ready");
    // The guard's argv is GRACE_MS CMD…: here CMD is the ready file, then the command.
    const run = new CommandRun([ready, "sleep", "30"], process.env, 3000, guard);
    await waitFor("the guard to ignore stop signals", () => existsSync(ready), {
      timeoutMs: 10_000,
    });
    const exit = await run.stop();
    assert.equal(exit.killed, false, "the command was killed after the grace period");
    assert.equal(exit.stopped, true);
    assert.ok(exit.ranMs < 3000, `ran ${exit.ranMs} ms`);
  });

  it("the real guard says `spawned` (else no SIGTERM is ever sent): a command stopped at once ends on SIGTERM", async () => {
    const run = new CommandRun(["sleep", "30"], process.env, 3000);
    const exit = await run.stop();
    assert.equal(exit.killed, false);
    assert.equal(exit.signal, "SIGTERM");
  });
});
