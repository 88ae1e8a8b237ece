import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { type ConfigError, isConfigError, isStoreError } from "../../src/errors.js";
import { openStore } from "../../src/open.js";
import type { LeaseStore } from "../../src/store/types.js";
import {
  loadBetterSqlite3,
  loadNodeSqlite,
  type NodeDatabaseSyncCtor,
} from "../../src/stores/sqlite/driver.js";
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

/** A raw connection to a database file, to look at or lock it behind the store's back. */
interface Raw {
  exec(sql: string): void;
  run(sql: string, ...p: unknown[]): void;
  get(sql: string, ...p: unknown[]): unknown;
  close(): void;
}

interface Driver {
  name: "better-sqlite3" | "node:sqlite";
  /** Why it cannot run on this Node, or null. */
  missing: string | null;
  store(path: string, opts?: ConstructorParameters<typeof SqliteStore>[1]): SqliteStore;
  raw(path: string): Raw;
  /** An open connection of the driver's own type, for `new SqliteStore(db)`. */
  handle(): { db: ConstructorParameters<typeof SqliteStore>[0]; isOpen(): boolean; close(): void };
}

const Better = await loadBetterSqlite3();
let betterMissing: string | null = "error" in Better ? Better.error : null;
if (!("error" in Better)) {
  try {
    new Better(":memory:").close();
  } catch (e) {
    // better-sqlite3 is built for one Node ABI (the machine's Node 20)
    betterMissing = (e as Error).message.split("\n")[0]!;
  }
}
const NodeSqlite: NodeDatabaseSyncCtor | null = await loadNodeSqlite();

const DRIVERS: Driver[] = [
  {
    name: "better-sqlite3",
    missing: betterMissing,
    store: (path, opts = {}) =>
      new SqliteStore(path, { ...opts, Database: Better as typeof import("better-sqlite3") }),
    raw: (path) => {
      const db = new (Better as typeof import("better-sqlite3"))(path);
      return {
        exec: (sql) => db.exec(sql),
        run: (sql, ...p) => db.prepare(sql).run(...p),
        get: (sql, ...p) =>
          db
            .prepare(sql)
            .safeIntegers(true)
            .get(...p),
        close: () => db.close(),
      };
    },
    handle: () => {
      const db = new (Better as typeof import("better-sqlite3"))(":memory:");
      return { db, isOpen: () => db.open, close: () => db.close() };
    },
  },
  {
    name: "node:sqlite",
    missing: NodeSqlite ? null : `node:sqlite needs Node 22.13+ (this is ${process.version})`,
    store: (path, opts = {}) => new SqliteStore(path, { ...opts, DatabaseSync: NodeSqlite! }),
    raw: (path) => {
      const db = new NodeSqlite!(path);
      return {
        exec: (sql) => db.exec(sql),
        run: (sql, ...p) => db.prepare(sql).run(...p),
        get: (sql, ...p) => {
          const st = db.prepare(sql);
          st.setReadBigInts(true);
          return st.get(...p);
        },
        close: () => db.close(),
      };
    },
    handle: () => {
      const db = new NodeSqlite!(":memory:");
      let open = true;
      return {
        db,
        isOpen: () => {
          try {
            db.exec("SELECT 1");
            return open;
          } catch {
            return false;
          }
        },
        close: () => {
          open = false;
          db.close();
        },
      };
    },
  },
];

if (DRIVERS.every((d) => d.missing)) {
  throw new Error(`no SQLite driver runs here: ${DRIVERS.map((d) => d.missing).join("; ")}`);
}

for (const d of DRIVERS) {
  if (d.missing) {
    describe(`sqlite store (${d.name})`, () => {
      it("runs where its driver loads", (t) => {
        t.skip(`${d.name} is not usable on Node ${process.versions.node}: ${d.missing}`);
      });
    });
    continue;
  }
  const file = join(dir, d.name.replace(":", "-"), "conformance", "leases.db");
  const conformanceStores: SqliteStore[] = [];
  describeLeaseStore(
    `sqlite (${d.name})`,
    async () => {
      const s = d.store(file);
      conformanceStores.push(s);
      return s;
    },
    {
      // An embedded database "restarts" when every handle on the file is closed
      // (the last close checkpoints the WAL) and it is opened again.
      restartServer: async () => {
        await Promise.all(conformanceStores.splice(0).map((s) => s.close()));
      },
      // Another connection holds the write lock: the store's writes wait
      // busyTimeoutMs, then fail with SQLITE_BUSY (transient).
      stallable: async () => {
        const store = d.store(file, { busyTimeoutMs: 100 });
        const raw = d.raw(file);
        let locked = false;
        const heal = async () => {
          if (locked) raw.exec("COMMIT");
          locked = false;
        };
        return {
          store,
          stall: async () => {
            raw.exec("BEGIN IMMEDIATE");
            locked = true;
          },
          heal,
          close: async () => {
            await heal();
            raw.close();
            await store.close();
          },
        };
      },
      // Counted (better-sqlite3): write transactions the store opens, each one
      // BEGIN IMMEDIATE … COMMIT (`db.transaction` calls on the connection).
      ...(d.name === "better-sqlite3"
        ? {
            counted: {
              open: async () => {
                const Database = Better as typeof import("better-sqlite3");
                const db = new Database(file);
                let n = 0;
                const counting = new Proxy(db, {
                  get(target, prop) {
                    const v = Reflect.get(target, prop);
                    if (prop === "transaction") {
                      return (fn: (...a: unknown[]) => unknown) => {
                        const tx = (v as typeof db.transaction).call(target, fn);
                        const one =
                          (f: (...a: unknown[]) => unknown) =>
                          (...a: unknown[]) => {
                            n++;
                            return f(...a);
                          };
                        return Object.assign(one(tx), {
                          immediate: one(tx.immediate),
                          deferred: one(tx.deferred),
                          exclusive: one(tx.exclusive),
                        });
                      };
                    }
                    return typeof v === "function" ? v.bind(target) : v;
                  },
                });
                const store = new SqliteStore(counting);
                return {
                  store: {
                    ...bindAll(store),
                    close: async () => {
                      await store.close();
                      db.close();
                    },
                  },
                  requests: () => n,
                };
              },
              perBatch: 1,
            },
          }
        : {}),
    },
  );
  describeSqlite(d, file);
}

/** The store's methods bound to it, as a plain object (to replace one of them). */
function bindAll(s: SqliteStore): LeaseStore {
  return {
    kind: s.kind,
    notifies: s.notifies,
    acquire: s.acquire.bind(s),
    acquireMany: s.acquireMany.bind(s),
    renew: s.renew.bind(s),
    renewMany: s.renewMany.bind(s),
    release: s.release.bind(s),
    releaseMany: s.releaseMany.bind(s),
    read: s.read.bind(s),
    list: s.list.bind(s),
    forceRelease: s.forceRelease.bind(s),
    putFenced: s.putFenced.bind(s),
    getFenced: s.getFenced.bind(s),
    close: s.close.bind(s),
  };
}

function describeSqlite(d: Driver, file: string): void {
  describe(`sqlite store (${d.name})`, () => {
    it("processes racing on one file: exactly one wins each lease", async () => {
      const db = join(dir, d.name.replace(":", "-"), "multi", "leases.db");
      const mod = join(REPO_ROOT, "dist", "src", "stores", "sqlite", "index.js");
      const prefix = uniqueName("mp");
      const rounds = 15;
      const script = `
      const { openSqliteStore } = await import(${JSON.stringify(mod)});
      const s = await openSqliteStore(${JSON.stringify(`sqlite:${db}?driver=${d.name}`)});
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
        const won = (await Promise.all(lines.map((l) => l()))).map(
          (l) => JSON.parse(l) as number[],
        );
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
      const s = d.store(file);
      const n = uniqueName("wall");
      try {
        const a = await s.acquire(n, "a", 5000);
        assert.ok(a.acquired);
        // The row holds a CLOCK_MONOTONIC deadline, not an epoch time.
        const raw = d.raw(file);
        const row = raw.get(
          "SELECT expires_mono_ms AS e, boot_id AS b FROM tenure_leases WHERE name = ?",
          n,
        ) as { e: bigint; b: string };
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
      const s = d.store(file, { monotonicNow: () => mono, bootId: "fake-boot" });
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
      const before = d.store(file, { bootId: "previous-boot" });
      const a = await before.acquire(n, "a", 600_000);
      assert.ok(a.acquired);
      await before.close();
      const s = d.store(file);
      try {
        assert.equal(await s.read(n), null);
        const b = await s.acquire(n, "b", 5000);
        assert.ok(b.acquired && b.lease.token > a.lease.token);
      } finally {
        await s.close();
      }
    });

    it("creates the file and its parent folders", async () => {
      const p = join(dir, d.name.replace(":", "-"), "x", "y", "z", "leases.db");
      const s = await openStore(`sqlite:${p}?driver=${d.name}`);
      try {
        assert.equal(s.kind, "sqlite");
        assert.ok(existsSync(p));
        assert.ok((await s.acquire("created", "a", 1000)).acquired);
      } finally {
        await s.close();
      }
      const triple = join(dir, d.name.replace(":", "-"), "triple", "l.db");
      const s2 = await openStore(`sqlite://${triple}?driver=${d.name}`);
      assert.equal((s2 as SqliteStore).driver, d.name);
      assert.ok(existsSync(triple));
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
        await assert.rejects(openStore(`${url}?driver=${d.name}`), (e: unknown) => {
          assert.ok(isConfigError(e), `${url}: ${String(e)}`);
          assert.equal((e as ConfigError).field, "store");
          return true;
        });
      }
    });

    it("garbage in a row is a fatal StoreError of kind schema; list() names it and lists the rest", async () => {
      const p = join(dir, d.name.replace(":", "-"), "garbage.db");
      const s = await openSqliteStore(`sqlite:${p}`, {}, { driver: d.name });
      try {
        const raw = d.raw(p);
        raw.run(
          "INSERT INTO tenure_leases (name, holder, token, expires_mono_ms, boot_id) VALUES (?, ?, ?, ?, ?)",
          "junk",
          "a",
          "not-a-number",
          5,
          "b",
        );
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
      const p = join(dir, d.name.replace(":", "-"), "busy.db");
      const s = d.store(p, { busyTimeoutMs: 50 });
      const other = d.raw(p);
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

    it(`works on an existing ${d.name} database and leaves it open`, async () => {
      const h = d.handle();
      const s = new SqliteStore(h.db);
      assert.equal(s.driver, d.name);
      const a = await s.acquire("mem", "a", 1000);
      assert.ok(a.acquired);
      await s.close();
      assert.equal(h.isOpen(), true);
      h.close();
    });
  });
}

describe("sqlite driver choice", () => {
  it("openStore picks node:sqlite where Node has it, else better-sqlite3", async () => {
    const s = (await openStore(`sqlite:${join(dir, "choice.db")}`)) as SqliteStore;
    try {
      assert.equal(s.driver, NodeSqlite ? "node:sqlite" : "better-sqlite3");
    } finally {
      await s.close();
    }
    await assert.rejects(openStore(`sqlite:${join(dir, "x.db")}?driver=sqlite3`), (e: unknown) => {
      assert.ok(isConfigError(e), String(e));
      assert.match((e as Error).message, /driver.*node:sqlite or better-sqlite3/);
      return true;
    });
  });
});
