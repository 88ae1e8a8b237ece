import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import Database from "better-sqlite3";
import { type ConfigError, isConfigError, isStoreError } from "../../src/errors.js";
import { openStore } from "../../src/store/open.js";
import {
  hostBootId,
  hostMonotonicMs,
  openSqliteStore,
  SqliteStore,
} from "../../src/stores/sqlite/index.js";
import { describeLeaseStore } from "../helpers/conformance.js";
import { REPO_ROOT } from "../helpers/services.js";
import { uniqueName } from "../helpers/wait.js";

const dir = mkdtempSync(join(tmpdir(), "tenure-sqlite-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, "conformance", "leases.db");

const conformanceStores: SqliteStore[] = [];
describeLeaseStore(
  "sqlite",
  async () => {
    const s = new SqliteStore(file, { Database });
    conformanceStores.push(s);
    return s;
  },
  {
    // An embedded database "restarts" when every handle on the file is closed
    // (the last close checkpoints the WAL) and it is opened again.
    restartServer: async () => {
      await Promise.all(conformanceStores.splice(0).map((s) => s.close()));
    },
  },
);

describe("sqlite store", () => {
  it("processes racing on one file: exactly one wins each lease", async () => {
    const db = join(dir, "multi", "leases.db");
    const mod = join(REPO_ROOT, "dist", "src", "stores", "sqlite", "index.js");
    const prefix = uniqueName("mp");
    const rounds = 15;
    const script = `
      const { openSqliteStore } = await import(${JSON.stringify(mod)});
      const s = await openSqliteStore(${JSON.stringify(`sqlite:${db}`)});
      process.stdout.write("ready\\n");
      process.stdin.once("data", async () => {
        const won = [];
        for (let i = 0; i < ${rounds}; i++) {
          const r = await s.acquire(${JSON.stringify(prefix)} + "-" + i, "p" + process.pid, 10000);
          if (r.acquired) won.push(i);
          else if (!r.current || r.current.holder === "p" + process.pid) throw new Error("loser without a holder");
        }
        process.stdout.write(JSON.stringify(won) + "\\n");
        await s.close();
        process.exit(0);
      });`;
    const n = 5;
    const kids = Array.from({ length: n }, () =>
      spawn(process.execPath, ["--input-type=module", "-e", script], {
        stdio: ["pipe", "pipe", "inherit"],
      }),
    );
    const lines = kids.map((k) => {
      let buf = "";
      const waiters: Array<(l: string) => void> = [];
      const got: string[] = [];
      k.stdout.setEncoding("utf8");
      k.stdout.on("data", (d: string) => {
        buf += d;
        let i = buf.indexOf("\n");
        while (i >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const w = waiters.shift();
          if (w) w(line);
          else got.push(line);
          i = buf.indexOf("\n");
        }
      });
      return () =>
        new Promise<string>((res, rej) => {
          const l = got.shift();
          if (l !== undefined) return res(l);
          waiters.push(res);
          k.once("exit", (code) => rej(new Error(`child exited with ${code}`)));
        });
    });
    try {
      assert.deepEqual(await Promise.all(lines.map((l) => l())), Array(n).fill("ready"));
      for (const k of kids) k.stdin.write("go\n");
      const won = (await Promise.all(lines.map((l) => l()))).map((l) => JSON.parse(l) as number[]);
      const all = won.flat().sort((a, b) => a - b);
      assert.deepEqual(
        all,
        Array.from({ length: rounds }, (_, i) => i),
        `winners per lease: ${JSON.stringify(won)}`,
      );
    } finally {
      for (const k of kids) k.kill();
    }
  });

  it("expiry follows the host's monotonic clock, not the wall clock", async () => {
    const realNow = Date.now;
    const s = new SqliteStore(file, { Database });
    const n = uniqueName("wall");
    try {
      const a = await s.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      // The row holds a CLOCK_MONOTONIC deadline, not an epoch time.
      const raw = new Database(file, { readonly: true });
      const row = raw
        .prepare("SELECT expires_mono_ms AS e, boot_id AS b FROM tenure_leases WHERE name = ?")
        .safeIntegers(true)
        .get(n) as { e: bigint; b: string };
      raw.close();
      const mono = hostMonotonicMs();
      assert.ok(row.e > mono && row.e <= mono + 5000n, `expires ${row.e} vs monotonic ${mono}`);
      assert.equal(row.b, hostBootId());
      // Wall clock jumps an hour forward, then a day back: the lease neither expires nor stretches.
      for (const jump of [3_600_000, -86_400_000]) {
        Date.now = () => realNow() + jump;
        const info = await s.read(n);
        assert.equal(info?.holder, "a", `after a ${jump} ms wall jump`);
        assert.ok(info.expiresInMs > 3000 && info.expiresInMs <= 5000, `${info.expiresInMs}`);
        const b = await s.acquire(n, "b", 5000);
        assert.equal(b.acquired, false);
      }
    } finally {
      Date.now = realNow;
      await s.close();
    }
  });

  it("an injected monotonic clock alone decides expiry", async () => {
    let mono = 1_000_000n;
    const s = new SqliteStore(file, { Database, monotonicNow: () => mono, bootId: "fake-boot" });
    const n = uniqueName("mono");
    try {
      const a = await s.acquire(n, "a", 1000);
      assert.ok(a.acquired);
      mono += 999n;
      assert.equal((await s.read(n))?.expiresInMs, 1);
      mono += 1n;
      assert.equal(await s.read(n), null);
      assert.equal((await s.renew(a.lease, 1000)).renewed, false);
    } finally {
      await s.close();
    }
  });

  it("rows written before a reboot (another boot id) are expired; tokens still grow", async () => {
    const n = uniqueName("boot");
    const before = new SqliteStore(file, { Database, bootId: "previous-boot" });
    const a = await before.acquire(n, "a", 600_000);
    assert.ok(a.acquired);
    await before.close();
    const s = new SqliteStore(file, { Database });
    try {
      assert.equal(await s.read(n), null);
      const b = await s.acquire(n, "b", 5000);
      assert.ok(b.acquired && b.lease.token > a.lease.token);
    } finally {
      await s.close();
    }
  });

  it("creates the file and its parent folders", async () => {
    const p = join(dir, "x", "y", "z", "leases.db");
    const s = await openStore(`sqlite:${p}`);
    try {
      assert.equal(s.kind, "sqlite");
      assert.ok(existsSync(p));
      assert.ok((await s.acquire("created", "a", 1000)).acquired);
    } finally {
      await s.close();
    }
    const s2 = await openStore(`sqlite://${join(dir, "triple", "l.db")}`);
    assert.ok(existsSync(join(dir, "triple", "l.db")));
    await s2.close();
  });

  it("bad URLs and paths give a ConfigError naming store", async () => {
    const notADir = join(dir, "plain-file");
    writeFileSync(notADir, "hello");
    const notADb = join(dir, "not-a-db.db");
    writeFileSync(
      notADb,
      "this is certainly not a SQLite database, it is far too chatty".repeat(20),
    );
    for (const url of [
      "sqlite:",
      "sqlite://somehost/leases.db",
      `sqlite:${dir}/`,
      `sqlite:${notADir}/sub/leases.db`,
      `sqlite:${dir}`,
      `sqlite:${notADb}`,
    ]) {
      await assert.rejects(openStore(url), (e: unknown) => {
        assert.ok(isConfigError(e), `${url}: ${String(e)}`);
        assert.equal((e as ConfigError).field, "store");
        return true;
      });
    }
  });

  it("garbage in a row is a fatal StoreError of kind schema; list() names it and lists the rest", async () => {
    const p = join(dir, "garbage.db");
    const s = await openSqliteStore(`sqlite:${p}`);
    try {
      const raw = new Database(p);
      raw
        .prepare(
          "INSERT INTO tenure_leases (name, holder, token, expires_mono_ms, boot_id) VALUES (?, ?, ?, ?, ?)",
        )
        .run("junk", "a", "not-a-number", 5, "b");
      raw.close();
      for (const op of [() => s.read("junk"), () => s.acquire("junk", "b", 1000)]) {
        await assert.rejects(op(), (e: unknown) => {
          assert.ok(isStoreError(e), String(e));
          assert.equal(e.kind, "schema");
          assert.equal(e.transient, false);
          return true;
        });
      }
      // One bad row does not break list(): the good leases are listed, the bad row named.
      assert.ok((await s.acquire("fine", "a", 60_000)).acquired);
      const invalid: { name: string; problem: string }[] = [];
      const all = await s.list({ onInvalid: (b) => invalid.push(b) });
      assert.deepEqual(
        all.map((l) => l.name),
        ["fine"],
      );
      assert.equal(invalid.length, 1);
      assert.equal(invalid[0]?.name, "junk");
      assert.match(invalid[0]?.problem ?? "", /row "junk" has holder=string token=string/);
    } finally {
      await s.close();
    }
  });

  it("a writer lock held by another process is a transient SQLITE_BUSY", async () => {
    const p = join(dir, "busy.db");
    const s = new SqliteStore(p, { Database, busyTimeoutMs: 50 });
    const other = new Database(p);
    try {
      other.exec("BEGIN IMMEDIATE");
      await assert.rejects(s.acquire("busy", "a", 1000), (e: unknown) => {
        assert.ok(isStoreError(e), String(e));
        assert.equal(e.transient, true);
        assert.match(e.code ?? "", /^SQLITE_BUSY/);
        return true;
      });
      other.exec("COMMIT");
      assert.ok((await s.acquire("busy", "a", 1000)).acquired);
    } finally {
      other.close();
      await s.close();
    }
  });

  it("works on an existing better-sqlite3 Database and leaves it open", async () => {
    const db = new Database(":memory:");
    const s = new SqliteStore(db);
    const a = await s.acquire("mem", "a", 1000);
    assert.ok(a.acquired);
    await s.close();
    assert.equal(db.open, true);
    db.close();
  });
});
