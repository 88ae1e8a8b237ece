/**
 * SQLite release notifications through the doorbell file
 * (src/stores/sqlite/notify.ts): between two stores of one process, and from
 * another process.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isConfigError } from "../../src/errors.js";
import type { LeaseEvent } from "../../src/store/types.js";
import { loadBetterSqlite3, loadNodeSqlite } from "../../src/stores/sqlite/driver.js";
import { SqliteStore } from "../../src/stores/sqlite/index.js";
import { DOORBELL_RECHECK_MS, doorbellPath } from "../../src/stores/sqlite/notify.js";
import { REPO_ROOT } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

const dir = mkdtempSync(join(tmpdir(), "tenure-sqlite-notify-"));
after(() => rmSync(dir, { recursive: true, force: true }));

// The driver this Node runs (as openSqliteStore picks it): node:sqlite where
// it is usable, else better-sqlite3 (whose binary is built for one Node only).
const DatabaseSync = await loadNodeSqlite();
const Better = DatabaseSync ? null : await loadBetterSqlite3();
const DRIVER = DatabaseSync ? "node:sqlite" : "better-sqlite3";
const skip = Better && "error" in Better ? { skip: `better-sqlite3: ${Better.error}` } : {};
const open = (file: string, opts: { notify?: boolean } = {}) =>
  DatabaseSync
    ? new SqliteStore(file, { DatabaseSync, ...opts })
    : new SqliteStore(file, { Database: Better as typeof import("better-sqlite3"), ...opts });

describe("sqlite release notifications", skip, () => {
  it("each acquire, release and forceRelease of another store reaches a watcher", async () => {
    const file = join(dir, "one", "leases.db");
    const holder = open(file);
    const watcher = open(file);
    const n = uniqueName("ring");
    const events: LeaseEvent["type"][] = [];
    const unwatch = await watcher.watch(n, (e) => {
      assert.equal(e.name, n);
      events.push(e.type);
    });
    try {
      assert.equal(watcher.notifies, true);
      const seen = async (count: number, type: LeaseEvent["type"]) => {
        await waitFor(`event ${count}: ${type}`, () => events.length >= count, {
          timeoutMs: 3000,
        });
        assert.equal(events[count - 1], type, events.join(","));
      };
      // Each step waits for its own event: a change that rang no bell would time out.
      const a = await holder.acquire(n, "a", 10_000);
      assert.ok(a.acquired);
      await seen(1, "acquired");
      assert.equal(await holder.release(a.lease), true);
      await seen(2, "released");
      const b = await holder.acquire(n, "b", 10_000);
      assert.ok(b.acquired);
      await seen(3, "acquired");
      assert.equal(await holder.forceRelease(n), true);
      await seen(4, "released");
      // A renewal is no change of term: no event.
      const c = await holder.acquire(n, "c", 10_000);
      assert.ok(c.acquired);
      await seen(5, "acquired");
      assert.ok((await holder.renew(c.lease, 10_000)).renewed);
      assert.equal(await holder.release(c.lease), true);
      await seen(6, "released");
      assert.deepEqual(events, [
        "acquired",
        "released",
        "acquired",
        "released",
        "acquired",
        "released",
      ]);
    } finally {
      await unwatch();
      await holder.close();
      await watcher.close();
    }
  });

  it("a release by another process wakes a watcher here", async () => {
    const file = join(dir, "procs", "leases.db");
    const watcher = open(file);
    const n = uniqueName("proc");
    const mod = join(REPO_ROOT, "dist", "src", "stores", "sqlite", "index.js");
    const script = `
      const { openSqliteStore } = await import(${JSON.stringify(mod)});
      const s = await openSqliteStore(${JSON.stringify(`sqlite:${file}?driver=${DRIVER}`)});
      const a = await s.acquire(${JSON.stringify(n)}, "other", 30000);
      process.stdout.write("held\\n");
      process.stdin.once("data", async () => {
        await s.release(a.lease);
        await s.close();
        process.exit(0);
      });`;
    const kid = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    let out = "";
    kid.stdout.on("data", (b) => {
      out += String(b);
    });
    const events: string[] = [];
    const unwatch = await watcher.watch(n, (e) => events.push(e.type));
    try {
      await waitFor("the other process to hold the lease", () => out.includes("held"), {
        timeoutMs: 10_000,
      });
      await waitFor("acquired event", () => events.includes("acquired"), { timeoutMs: 3000 });
      assert.equal((await watcher.read(n))?.holder, "other");
      kid.stdin.write("go\n");
      await waitFor("released event", () => events.includes("released"), { timeoutMs: 3000 });
      assert.equal(await watcher.read(n), null);
    } finally {
      await unwatch();
      kid.kill();
      await watcher.close();
    }
  });

  it("a deleted doorbell file: watchers get `changed`, and rings reach them again", async () => {
    const file = join(dir, "deleted", "leases.db");
    const holder = open(file);
    const watcher = open(file);
    const n = uniqueName("del");
    const events: string[] = [];
    const unwatch = await watcher.watch(n, (e) => events.push(e.type));
    try {
      const a = await holder.acquire(n, "a", 10_000); // the holder opens the file now
      assert.ok(a.acquired);
      await waitFor("acquired", () => events.includes("acquired"), { timeoutMs: 3000 });
      unlinkSync(doorbellPath(file));
      await waitFor("changed", () => events.includes("changed"), { timeoutMs: 3000 });
      // The holder still has the deleted file open: its rings reach watchers again once it
      // notices (within DOORBELL_RECHECK_MS), not never.
      events.length = 0;
      let lease = a.lease;
      await waitFor(
        "a release event through the new file",
        async () => {
          assert.equal(await holder.release(lease), true);
          const r = await holder.acquire(n, "a", 10_000);
          assert.ok(r.acquired);
          lease = r.lease;
          return events.includes("acquired") || events.includes("released");
        },
        { timeoutMs: DOORBELL_RECHECK_MS + 3000, intervalMs: 50 },
      );
    } finally {
      await unwatch();
      await holder.close();
      await watcher.close();
    }
  });

  it("unwatch stops the events", async () => {
    const file = join(dir, "unwatch", "leases.db");
    const holder = open(file);
    const watcher = open(file);
    const n = uniqueName("un");
    const other = uniqueName("un-other");
    const mine: string[] = [];
    const theirs: string[] = [];
    const unwatch = await watcher.watch(n, (e) => mine.push(e.type));
    const unwatchOther = await watcher.watch(other, (e) => theirs.push(e.type));
    try {
      await unwatch();
      const a = await holder.acquire(n, "a", 10_000);
      assert.ok(a.acquired);
      const b = await holder.acquire(other, "a", 10_000);
      assert.ok(b.acquired);
      // The other name's event comes from the same ring: by then the first name's would have too.
      await waitFor("the other lease's event", () => theirs.length > 0, { timeoutMs: 3000 });
      assert.deepEqual(mine, []);
    } finally {
      await unwatchOther();
      await holder.close();
      await watcher.close();
    }
  });

  it("no doorbell for :memory: or notify: false: notifies is false and watch refuses", async () => {
    const file = join(dir, "off", "leases.db");
    const off = open(file, { notify: false });
    const mem = open(":memory:");
    try {
      for (const s of [off, mem]) {
        assert.equal(s.notifies, false);
        await assert.rejects(
          s.watch("x", () => {}),
          (e: unknown) => isConfigError(e),
        );
      }
      const a = await off.acquire(uniqueName("off"), "a", 1000);
      assert.ok(a.acquired);
      assert.equal(existsSync(doorbellPath(file)), false);
    } finally {
      await off.close();
      await mem.close();
    }
  });
});
