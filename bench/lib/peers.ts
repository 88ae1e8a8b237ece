/**
 * The lock implementations compared in part 1, each reduced to the same three
 * verbs: `tryAcquire(key)` (one attempt, no built-in retry, returns a handle or
 * null), `release(handle)` and `close()`. The harness owns retrying, so every
 * peer waits the same way under contention.
 */
import { randomBytes } from "node:crypto";
import { openStore } from "../../src/open.js";
import type { LeaseRef, LeaseStore } from "../../src/store/types.js";
import { etcdHosts, serviceUrls } from "./common.js";

export interface LockClient {
  tryAcquire(key: string): Promise<unknown | null>;
  release(handle: unknown): Promise<void>;
  close(): Promise<void>;
}

export interface LockPeer {
  id: string;
  server: "redis" | "postgres" | "etcd" | "sqlite";
  /** Library (npm name) measured. */
  lib: string;
  /** How the peer does acquire + release, for the generated doc. */
  how: string;
  open(ttlMs: number, ctx: { sqlitePath: string }): Promise<LockClient>;
}

function tenure(
  server: LockPeer["server"],
  url: (ctx: { sqlitePath: string }) => string,
): LockPeer {
  return {
    id: `tenure-${server}`,
    server,
    lib: "tenure",
    how: "store.acquire(name, holder, ttl) + store.release(lease)",
    async open(ttlMs, ctx) {
      const store: LeaseStore = await openStore(url(ctx));
      const holder = `bench-${randomBytes(4).toString("hex")}`;
      return {
        async tryAcquire(key) {
          const r = await store.acquire(key, holder, ttlMs);
          return r.acquired ? r.lease : null;
        },
        async release(h) {
          await store.release(h as LeaseRef);
        },
        close: () => store.close(),
      };
    },
  };
}

async function ioredis() {
  const { Redis } = await import("ioredis");
  const r = new Redis(serviceUrls().redis, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await r.connect();
  return r;
}

/** The two Redlock ports share one API; only the class differs. */
interface RedlockLike {
  acquire(keys: string[], ttl: number): Promise<{ release(): Promise<unknown> }>;
  on(event: "error", fn: () => void): unknown;
}
type RedlockClass = new (
  clients: unknown[],
  options: { retryCount: number; automaticExtensionThreshold: number },
) => RedlockLike;

function redlockPeer(id: string, lib: string, load: () => Promise<unknown>): LockPeer {
  return {
    id,
    server: "redis",
    lib,
    how: "redlock.acquire([key], ttl, retryCount 0) + lock.release()",
    async open(ttlMs) {
      const Redlock = (await load()) as RedlockClass;
      const client = await ioredis();
      const redlock = new Redlock([client], { retryCount: 0, automaticExtensionThreshold: 500 });
      redlock.on("error", () => {});
      return {
        async tryAcquire(key) {
          try {
            return await redlock.acquire([key], ttlMs);
          } catch {
            return null;
          }
        },
        async release(h) {
          await (h as { release(): Promise<unknown> }).release();
        },
        async close() {
          await client.quit().catch(() => client.disconnect());
        },
      };
    },
  };
}

export const LOCK_PEERS: LockPeer[] = [
  tenure("redis", () => serviceUrls().redis),
  redlockPeer("redlock-v5", "redlock", async () => (await import("redlock")).default),
  redlockPeer(
    "sesame-redlock",
    "@sesamecare-oss/redlock",
    async () => (await import("@sesamecare-oss/redlock")).Redlock,
  ),
  {
    id: "redis-semaphore",
    server: "redis",
    lib: "redis-semaphore",
    how: "new Mutex(client, key, {acquireAttemptsLimit 1, retryInterval 0, refreshInterval 0}).tryAcquire() + release()",
    async open(ttlMs) {
      const { Mutex } = await import("redis-semaphore");
      const client = await ioredis();
      return {
        async tryAcquire(key) {
          const m = new Mutex(client, key, {
            lockTimeout: ttlMs,
            acquireAttemptsLimit: 1,
            // redis-semaphore sleeps retryInterval (default 10 ms) after a failed
            // attempt, even its last one: a loser then stays away 10 ms longer than
            // the harness's 1–3 ms retry, and under contention the last holder takes
            // the lock again and again (fewer failed tries, a lower p50). 0 leaves a
            // timer of at least 1 ms (Node's minimum): the closest to "no wait" the
            // API allows.
            retryInterval: 0,
            refreshInterval: 0,
          });
          return (await m.tryAcquire()) ? m : null;
        },
        async release(h) {
          await (h as { release(): Promise<void> }).release();
        },
        async close() {
          await client.quit().catch(() => client.disconnect());
        },
      };
    },
  },
  tenure("postgres", () => serviceUrls().postgres),
  {
    id: "advisory-lock",
    server: "postgres",
    lib: "advisory-lock",
    how: "createMutex(key).tryLock() + unlock() (the library opens a new connection per lock)",
    async open() {
      // CommonJS with `exports.default`: the ESM default is the exports object.
      const mod = (await import("advisory-lock")) as unknown as {
        default: { default: typeof import("advisory-lock").default };
      };
      const createMutex = mod.default.default(serviceUrls().postgres);
      return {
        async tryAcquire(key) {
          return (await createMutex(key).tryLock()) ?? null;
        },
        async release(h) {
          await (h as () => Promise<void>)();
        },
        async close() {},
      };
    },
  },
  {
    id: "pg-try-advisory",
    server: "postgres",
    lib: "pg",
    how: "hand-written: SELECT pg_try_advisory_lock($1) + SELECT pg_advisory_unlock($1) on one pg.Client",
    async open() {
      const pg = (await import("pg")).default;
      const client = new pg.Client({ connectionString: serviceUrls().postgres });
      await client.connect();
      const keyOf = (k: string) => {
        let h = 0n;
        for (const c of Buffer.from(k)) h = (h * 131n + BigInt(c)) & 0x7fffffffffffffffn;
        return h.toString();
      };
      return {
        async tryAcquire(key) {
          const k = keyOf(key);
          const r = await client.query<{ ok: boolean }>(
            "SELECT pg_try_advisory_lock($1::bigint) AS ok",
            [k],
          );
          return r.rows[0]?.ok ? k : null;
        },
        async release(h) {
          await client.query("SELECT pg_advisory_unlock($1::bigint)", [h as string]);
        },
        async close() {
          await client.end();
        },
      };
    },
  },
  tenure("etcd", () => {
    const u = serviceUrls().etcd;
    if (!u) throw new Error("no etcd server");
    return u;
  }),
  {
    id: "etcd3-lock",
    server: "etcd",
    lib: "etcd3",
    how: "client.lock(key).ttl(s).acquire() (grant lease + create-if-absent txn) + release() (revoke lease)",
    async open(ttlMs) {
      const { Etcd3, EtcdLockFailedError } = await import("etcd3");
      const u = serviceUrls().etcd;
      if (!u) throw new Error("no etcd server");
      const client = new Etcd3({ hosts: etcdHosts(u) });
      const ttlS = Math.max(1, Math.ceil(ttlMs / 1000));
      return {
        async tryAcquire(key) {
          const lock = client.lock(key).ttl(ttlS);
          try {
            await lock.acquire();
            return lock;
          } catch (e) {
            if (e instanceof EtcdLockFailedError) return null;
            throw e;
          }
        },
        async release(h) {
          await (h as { release(): Promise<void> }).release();
        },
        async close() {
          client.close();
        },
      };
    },
  },
  tenure("sqlite", (ctx) => `sqlite:${ctx.sqlitePath}`),
];

/** The cheapest command of each server: one raw round trip (part 4). */
export interface FloorProbe {
  server: LockPeer["server"];
  /** Peer id; the server's main floor (one round trip) has none and is `floor-<server>`. */
  id?: string;
  command: string;
  open(ctx: { sqlitePath: string }): Promise<{ once(): Promise<unknown>; close(): Promise<void> }>;
}

/** This process's own table for the PostgreSQL commit floor (dropped on close). */
const COMMIT_FLOOR_TABLE = `tenure_bench_commit_floor_${process.pid}`;
let commitFloorRows = 0;

export const FLOORS: FloorProbe[] = [
  {
    server: "redis",
    command: "PING (ioredis)",
    async open() {
      const r = await ioredis();
      return { once: () => r.ping(), close: async () => void (await r.quit()) };
    },
  },
  {
    server: "postgres",
    command: "SELECT 1 (pg.Client, simple query)",
    async open() {
      const pg = (await import("pg")).default;
      const c = new pg.Client({ connectionString: serviceUrls().postgres });
      await c.connect();
      return { once: () => c.query("SELECT 1"), close: () => c.end() };
    },
  },
  {
    server: "postgres",
    id: "floor-postgres-commit",
    command:
      "UPDATE of one row of a bench table in autocommit (pg.Client; each client its own row): one commit that flushes WAL",
    async open() {
      const pg = (await import("pg")).default;
      const c = new pg.Client({ connectionString: serviceUrls().postgres });
      await c.connect();
      const row = ++commitFloorRows;
      await c.query(
        `CREATE TABLE IF NOT EXISTS ${COMMIT_FLOOR_TABLE} (k int PRIMARY KEY, v bigint NOT NULL)`,
      );
      await c.query(`INSERT INTO ${COMMIT_FLOOR_TABLE} VALUES ($1, 0) ON CONFLICT DO NOTHING`, [
        row,
      ]);
      return {
        once: () => c.query(`UPDATE ${COMMIT_FLOOR_TABLE} SET v = v + 1 WHERE k = $1`, [row]),
        async close() {
          await c.query(`DROP TABLE IF EXISTS ${COMMIT_FLOOR_TABLE}`).catch(() => {});
          await c.end();
        },
      };
    },
  },
  {
    server: "etcd",
    command: "Range of a missing key (etcd3 get)",
    async open() {
      const { Etcd3 } = await import("etcd3");
      const u = serviceUrls().etcd;
      if (!u) throw new Error("no etcd server");
      const client = new Etcd3({ hosts: etcdHosts(u) });
      return {
        once: () => client.get("bench-floor-missing-key").string(),
        close: async () => client.close(),
      };
    },
  },
  {
    server: "sqlite",
    command: "SELECT 1 (the store's driver: node:sqlite, else better-sqlite3; in-process)",
    async open(ctx) {
      // The same driver the store picks: node:sqlite where Node has it.
      const { loadNodeSqlite } = await import("../../src/stores/sqlite/driver.js");
      const DatabaseSync = await loadNodeSqlite();
      if (DatabaseSync) {
        const db = new DatabaseSync(ctx.sqlitePath);
        const st = db.prepare("SELECT 1");
        return { once: async () => st.get(), close: async () => void db.close() };
      }
      const { default: Database } = await import("better-sqlite3");
      const db = new Database(ctx.sqlitePath);
      const st = db.prepare("SELECT 1");
      return { once: async () => st.get(), close: async () => void db.close() };
    },
  },
];
