import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { openStore } from "../../src/index.js";
import { requireService } from "../helpers/services.js";
import { within } from "../helpers/wait.js";
import { sqliteFaultsMissing, writeLockHeld } from "./faults-sqlite.js";
import { replayClean } from "./profile.js";
import { describeReplays } from "./regressions.js";

/**
 * Regression seeds of SQLite group episodes (issue 19). Each replays one
 * episode of the long profile exactly (`--replay group:sqlite:FAULT:SEED`):
 * a real SQLite file shared by 4 member processes of a 64-partition group.
 */
describeReplays("chaos regressions: SQLite groups", "sqlite", (env) => {
  const noJump = sqliteFaultsMissing().get("clock-jump");
  it(
    "group:sqlite:clock-jump:2017512979 (the leader's wall clock −64033 s, a 2.49 s window without probes): balanced in time",
    requireService("libfaketime", !noJump, noJump ?? ""),
    async (t) => {
      // The fleet stayed balanced through the jump (no term began or ended), but the time to
      // balance was counted from the jump, so it measured the harness's own 2490 ms window
      // before its first probe: 2511 ms against a bound of 2500 on every replay.
      await replayClean(env, t, "group:sqlite:clock-jump:2017512979");
    },
  );

  // group:sqlite:pause-long:1610044823 (seed 2701 run): the member was SIGSTOPped inside a
  // write transaction, so no member could write for the whole 1.7 s pause and every partition
  // went unworked 1.71–1.74 s from the pause's start (bound 1.7 s). Like stop-in-tx, the fleet
  // can recover only from the SIGCONT; the harness now tells that case by the lock itself.
  it("writeLockHeld tells a write lock held by a stopped writer from a free file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tenure-lock-"));
    const file = join(dir, "leases.db");
    try {
      const store = await openStore(`sqlite:${file}`);
      await store.close();
      assert.equal(await writeLockHeld(file, 100), false, "free file reported locked");
      const holder = spawn(
        process.execPath,
        [fileURLToPath(new URL("./sqlite-lock-holder.js", import.meta.url)), file],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      const exited = new Promise((r) => holder.once("exit", r));
      try {
        await within(
          "the lock holder to take the write lock",
          10_000,
          new Promise<void>((resolve, reject) => {
            holder.stdout.on("data", (d: Buffer) => {
              if (d.toString().includes("locked")) resolve();
            });
            holder.once("exit", (code) => reject(new Error(`lock holder exited ${code}`)));
          }),
        );
        holder.kill("SIGSTOP");
        assert.equal(await writeLockHeld(file, 100), true, "held lock not seen");
      } finally {
        holder.kill("SIGKILL");
        await within("the lock holder to exit", 10_000, exited);
      }
      assert.equal(await writeLockHeld(file, 100), false, "lock of a dead holder reported held");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("group:sqlite:pause-long:1610044823 (a member stopped for 1.7 s): no violation", async (t) => {
    await replayClean(env, t, "group:sqlite:pause-long:1610044823");
  });
});
