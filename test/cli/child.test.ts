import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { CommandRun } from "../../src/cli/child.js";
import { SPAWNED } from "../../src/cli/guard-protocol.js";
import { REPO_ROOT } from "../helpers/services.js";
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

/** The guard, started as `tenure run` starts it, by a parent that exits at once. */
const GONE_PARENT = `
import { spawn } from "node:child_process";
const [, , guard, ...command] = process.argv;
const g = spawn(process.execPath, [guard, "500", ...command], {
  detached: true,
  stdio: ["ignore", "ignore", "ignore", "ipc"],
});
process.stdout.write(String(g.pid));
process.exit(0);
`;

/** Pids of the live (not zombie) processes of process group `pgid` (Linux /proc). */
function liveInGroup(pgid: number): number[] {
  const pids: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${e}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid pgrp …: comm may hold spaces, so split after its ")".
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(pgrp) === pgid && state !== "Z") pids.push(Number(e));
  }
  return pids;
}

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

  it("a parent gone before the guard could listen for it (SIGKILL at once) leaves no command running", async () => {
    // The guard hears of its parent's death by the IPC channel's `disconnect`; a channel
    // that closed while the guard's modules were still loading gave no event to hear.
    const parent = join(dir, "gone-parent.mjs");
    writeFileSync(parent, GONE_PARENT);
    const guardPath = join(REPO_ROOT, "dist", "src", "cli", "guard.js");
    const pgid = Number(
      execFileSync(process.execPath, [parent, guardPath, "sleep", "30"], { encoding: "utf8" }),
    );
    assert.ok(pgid > 0);
    try {
      await waitFor("nothing left in the guard's process group", () =>
        liveInGroup(pgid).length === 0 ? true : null,
      );
    } finally {
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {}
    }
  });
});
