/**
 * SQLite lease store (`sqlite:PATH`): the embedded default. Many processes on
 * one host share one database file (WAL mode, `busy_timeout`, `BEGIN
 * IMMEDIATE` around every compare-and-set).
 *
 * Expiry is judged by the host's monotonic clock, never by wall time: Node's
 * `process.hrtime.bigint()` reads CLOCK_MONOTONIC, which on Linux is one clock
 * for every process of the host (time since boot, not counting suspend), so
 * expiry times written by one process mean the same to every other and do not
 * move when NTP or an operator steps the wall clock. Each row also records the
 * kernel's boot id (/proc/sys/kernel/random/boot_id): a row written before a
 * reboot is treated as expired, because the monotonic clock restarts at boot.
 */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ConfigError, StoreError, type StoreErrorKind } from "../../errors.js";
import { toStoreError } from "../../store/classify.js";
import { reportInvalid } from "../../store/invalid.js";
import type { OpenStoreOptions } from "../../store/open.js";
import type {
  AcquireResult,
  FencedPutResult,
  FencedValue,
  LeaseInfo,
  LeaseRef,
  LeaseStore,
  ListOptions,
  RenewItem,
  RenewResult,
} from "../../store/types.js";
import {
  validateFencedKey,
  validateFencedPut,
  validateHolder,
  validateLeaseName,
  validateLeaseRef,
  validateTtl,
} from "../../store/validate.js";
import {
  type BetterSqlite3,
  fromBetterSqlite3,
  fromNodeSqlite,
  isBetterSqlite3Db,
  isNodeSqliteDb,
  loadBetterSqlite3,
  loadNodeSqlite,
  type NodeDatabaseSync,
  type NodeDatabaseSyncCtor,
  SQLITE_DRIVERS,
  type SqliteDb,
  type SqliteDriverName,
  type SqliteStatement,
} from "./driver.js";
import { renewMany } from "./renew-many.js";

export {
  type NodeDatabaseSync,
  type NodeDatabaseSyncCtor,
  SQLITE_DRIVERS,
  type SqliteDriverName,
} from "./driver.js";

type BetterDatabase = import("better-sqlite3").Database;

/** Default name of the lease table. The fenced-values table is `<table>_fenced`. */
export const SQLITE_DEFAULT_TABLE = "tenure_leases";
/** Default milliseconds a writer waits for the file lock before SQLITE_BUSY (a transient error). */
export const SQLITE_DEFAULT_BUSY_TIMEOUT_MS = 2000;

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** Largest TTL the store accepts; an expiry further away than this means the clock restarted. */
const MAX_TTL_MS = 2_147_483_647n;

export interface SqliteStoreOptions {
  /** Lease table name (letters, digits, `_`). Default {@link SQLITE_DEFAULT_TABLE}. */
  table?: string;
  /**
   * How long a write waits for another process's lock before failing with a
   * transient SQLITE_BUSY error, in ms. better-sqlite3 is synchronous, so this
   * blocks the event loop while it waits; keep it short. Default
   * {@link SQLITE_DEFAULT_BUSY_TIMEOUT_MS}.
   */
  busyTimeoutMs?: number;
  /**
   * Monotonic host clock in milliseconds, shared by every process on the host.
   * Default: `process.hrtime.bigint() / 1e6` (CLOCK_MONOTONIC). Inject only in tests.
   */
  monotonicNow?: () => bigint;
  /**
   * Identifies the current boot of the host; rows written under another boot
   * id are expired. Default: /proc/sys/kernel/random/boot_id, or `"unknown"`
   * where that file does not exist (then a stored expiry more than the maximum
   * TTL ahead of the clock is also taken as "written before a reboot").
   */
  bootId?: string;
}

/** The host's monotonic clock in whole milliseconds (CLOCK_MONOTONIC on Linux). */
export function hostMonotonicMs(): bigint {
  return process.hrtime.bigint() / 1_000_000n;
}

/** The kernel's boot id, or `"unknown"` off Linux. */
export function hostBootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || "unknown";
  } catch {
    return "unknown";
  }
}

interface LeaseRow {
  holder: string | null;
  token: bigint;
  expires: bigint;
  boot: string;
}

function classifySqlite(
  _e: unknown,
  code: string | undefined,
): { transient: boolean; kind: StoreErrorKind } | null {
  if (!code?.startsWith("SQLITE_")) return null;
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return { transient: true, kind: "timeout" };
  }
  if (code.startsWith("SQLITE_IOERR") || code === "SQLITE_FULL" || code === "SQLITE_PROTOCOL") {
    return { transient: true, kind: "unavailable" };
  }
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB" || code === "SQLITE_SCHEMA") {
    return { transient: false, kind: "schema" };
  }
  if (code === "SQLITE_ERROR" || code === "SQLITE_MISMATCH" || code === "SQLITE_CONSTRAINT") {
    // "no such table/column", a hand-edited schema, a constraint we do not set up
    return { transient: false, kind: "schema" };
  }
  if (code.startsWith("SQLITE_READONLY") || code.startsWith("SQLITE_PERM")) {
    return { transient: false, kind: "auth" };
  }
  if (code.startsWith("SQLITE_CANTOPEN")) return { transient: false, kind: "config" };
  return { transient: false, kind: "unknown" };
}

function schemaError(what: string): StoreError {
  return new StoreError(`tenure sqlite: unexpected data in the lease table: ${what}`, {
    transient: false,
    kind: "schema",
  });
}

/**
 * A lease store in a SQLite file. Construct it from a file path (the file and
 * its folder are created) or from an open better-sqlite3 `Database` (not
 * closed by {@link close}).
 */
export class SqliteStore implements LeaseStore {
  readonly kind = "sqlite";
  /** SQLite has no cross-process notification: followers poll at the known expiry. */
  readonly notifies = false;
  /** The database file (`:memory:` for an in-memory database). */
  readonly path: string;
  private readonly db: SqliteDb;
  /** The driver underneath: `node:sqlite` or `better-sqlite3`. */
  readonly driver: SqliteDriverName;
  private readonly owned: boolean;
  private readonly now: () => bigint;
  private readonly boot: string;
  private readonly stmts: {
    get: SqliteStatement;
    upsert: SqliteStatement;
    extend: SqliteStatement;
    clear: SqliteStatement;
    all: SqliteStatement;
    fencedGet: SqliteStatement;
    fencedPut: SqliteStatement;
  };
  private closed = false;

  constructor(
    dbOrPath: string | BetterDatabase | NodeDatabaseSync,
    opts: SqliteStoreOptions & {
      /** better-sqlite3's `Database` constructor, to open `dbOrPath` with it. */
      Database?: BetterSqlite3;
      /** node:sqlite's `DatabaseSync` constructor, to open `dbOrPath` with it. */
      DatabaseSync?: NodeDatabaseSyncCtor;
    } = {},
  ) {
    const table = opts.table ?? SQLITE_DEFAULT_TABLE;
    if (!IDENT.test(table)) {
      throw new ConfigError("table", `must match ${IDENT} (got ${JSON.stringify(table)})`);
    }
    const busy = opts.busyTimeoutMs ?? SQLITE_DEFAULT_BUSY_TIMEOUT_MS;
    if (!Number.isInteger(busy) || busy < 0 || busy > 60_000) {
      throw new ConfigError("busyTimeoutMs", `must be an integer from 0 to 60000 (got ${busy})`);
    }
    this.now = opts.monotonicNow ?? hostMonotonicMs;
    this.boot = opts.bootId ?? hostBootId();
    if (typeof dbOrPath === "string") {
      if (!opts.Database && !opts.DatabaseSync) {
        throw new ConfigError(
          "store",
          "new SqliteStore(path) needs a driver: pass { DatabaseSync } from node:sqlite or { Database } from better-sqlite3, or use openSqliteStore(url)",
        );
      }
      this.path = dbOrPath;
      this.db = openFile(opts, dbOrPath);
      this.owned = true;
    } else if (isBetterSqlite3Db(dbOrPath)) {
      this.db = fromBetterSqlite3(dbOrPath);
      this.path = dbOrPath.name;
      this.owned = false;
    } else if (isNodeSqliteDb(dbOrPath)) {
      const main = dbOrPath.prepare("PRAGMA database_list").get() as { file?: unknown } | undefined;
      this.path = typeof main?.file === "string" && main.file !== "" ? main.file : ":memory:";
      this.db = fromNodeSqlite(dbOrPath, this.path);
      this.owned = false;
    } else {
      throw new ConfigError(
        "store",
        "must be a file path, a better-sqlite3 Database or a node:sqlite DatabaseSync",
      );
    }
    this.driver = this.db.driver;
    try {
      this.db.pragma(`busy_timeout = ${busy}`);
      if (!this.db.memory) {
        const mode = this.db.pragma("journal_mode = WAL");
        if (String(mode).toLowerCase() !== "wal" && !this.db.readonly) {
          throw new StoreError(
            `tenure sqlite: could not switch ${this.path} to WAL (got ${mode})`,
            {
              transient: false,
              kind: "config",
            },
          );
        }
        this.db.pragma("synchronous = NORMAL");
      }
      const fenced = `${table}_fenced`;
      this.db.transaction("immediate", () => {
        this.db.exec(
          `CREATE TABLE IF NOT EXISTS ${table} (
               name TEXT PRIMARY KEY NOT NULL,
               holder TEXT,
               token INTEGER NOT NULL,
               expires_mono_ms INTEGER NOT NULL,
               boot_id TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS ${fenced} (
               name TEXT NOT NULL,
               key TEXT NOT NULL,
               value TEXT NOT NULL,
               token INTEGER NOT NULL,
               PRIMARY KEY (name, key)
             );`,
        );
      });
      const prep = (sql: string) => this.db.prepare(sql);
      this.stmts = {
        get: prep(
          `SELECT holder, token, expires_mono_ms AS expires, boot_id AS boot FROM ${table} WHERE name = ?`,
        ),
        upsert: prep(
          `INSERT INTO ${table} (name, holder, token, expires_mono_ms, boot_id) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token,
             expires_mono_ms = excluded.expires_mono_ms, boot_id = excluded.boot_id`,
        ),
        extend: prep(`UPDATE ${table} SET expires_mono_ms = ?, boot_id = ? WHERE name = ?`),
        clear: prep(`UPDATE ${table} SET holder = NULL, expires_mono_ms = 0 WHERE name = ?`),
        all: prep(
          `SELECT name, holder, token, expires_mono_ms AS expires, boot_id AS boot FROM ${table}
           WHERE holder IS NOT NULL ORDER BY name`,
        ),
        fencedGet: prep(`SELECT value, token FROM ${fenced} WHERE name = ? AND key = ?`),
        fencedPut: prep(
          `INSERT INTO ${fenced} (name, key, value, token) VALUES (?, ?, ?, ?)
           ON CONFLICT (name, key) DO UPDATE SET value = excluded.value, token = excluded.token`,
        ),
      };
    } catch (e) {
      if (this.owned) this.db.close();
      throw this.openError(e);
    }
  }

  private openError(e: unknown): Error {
    if (e instanceof StoreError || e instanceof ConfigError) return e;
    const code = (e as { code?: unknown })?.code;
    if (code === "SQLITE_NOTADB" || code === "SQLITE_CORRUPT") {
      return new ConfigError(
        "store",
        `${JSON.stringify(this.path)} is not a usable SQLite database (${String(code)})`,
      );
    }
    return toStoreError("sqlite", `open ${this.path}`, e, classifySqlite);
  }

  /** Runs `fn` in a `BEGIN IMMEDIATE` transaction (writer lock taken up front). */
  private write<T>(op: string, fn: () => T): T {
    this.check();
    try {
      return this.db.transaction("immediate", fn);
    } catch (e) {
      throw toStoreError("sqlite", op, e, classifySqlite);
    }
  }

  private readTx<T>(op: string, fn: () => T): T {
    this.check();
    try {
      return this.db.transaction("deferred", fn);
    } catch (e) {
      throw toStoreError("sqlite", op, e, classifySqlite);
    }
  }

  private check(): void {
    if (this.closed) {
      throw new StoreError("tenure sqlite: store is closed", { transient: false, kind: "closed" });
    }
  }

  private row(name: string): LeaseRow | null {
    const r = this.stmts.get.get(name) as Record<string, unknown> | undefined;
    return r ? parseRow(name, r) : null;
  }

  /** Milliseconds left on a row by the host's monotonic clock; 0 when expired or from another boot. */
  private remaining(r: LeaseRow, now: bigint): bigint {
    if (r.holder === null || r.boot !== this.boot) return 0n;
    const left = r.expires - now;
    if (left <= 0n || left > MAX_TTL_MS) return 0n;
    return left;
  }

  private info(name: string, r: LeaseRow, now: bigint): LeaseInfo | null {
    const left = this.remaining(r, now);
    if (left <= 0n || r.holder === null) return null;
    return { name, holder: r.holder, token: r.token, expiresInMs: Number(left) };
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    validateLeaseName(name);
    validateHolder(holder, "holder");
    validateTtl(ttlMs);
    return this.write("acquire", () => {
      const now = this.now();
      const r = this.row(name);
      const cur = r ? this.info(name, r, now) : null;
      if (cur && cur.holder !== holder) return { acquired: false, current: cur };
      const token = (r?.token ?? 0n) + 1n;
      this.stmts.upsert.run(name, holder, token, now + BigInt(ttlMs), this.boot);
      return { acquired: true, lease: { name, holder, token } };
    });
  }

  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateLeaseRef(lease);
    validateTtl(ttlMs);
    return this.write("renew", () => this.renewAt(lease, ttlMs, this.now()));
  }

  /** Every item in one `BEGIN IMMEDIATE` transaction: see renew-many.ts. */
  renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return renewMany(
      {
        write: (fn) => this.write("renewMany", fn),
        now: this.now,
        renew: (l, t, now) => this.renewAt(l, t, now),
      },
      items,
    );
  }

  /** The renewal of one term inside a write transaction, judged at monotonic time `now`. */
  private renewAt(lease: LeaseRef, ttlMs: number, now: bigint): RenewResult {
    const r = this.row(lease.name);
    const cur = r ? this.info(lease.name, r, now) : null;
    if (!cur || cur.holder !== lease.holder || cur.token !== lease.token) {
      return { renewed: false, current: cur };
    }
    this.stmts.extend.run(now + BigInt(ttlMs), this.boot, lease.name);
    return { renewed: true };
  }

  async release(lease: LeaseRef): Promise<boolean> {
    validateLeaseRef(lease);
    return this.write("release", () => {
      const r = this.row(lease.name);
      if (!r || r.holder !== lease.holder || r.token !== lease.token) return false;
      const wasLive = this.remaining(r, this.now()) > 0n;
      this.stmts.clear.run(lease.name);
      return wasLive;
    });
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    return this.readTx("read", () => {
      const r = this.row(name);
      return r ? this.info(name, r, this.now()) : null;
    });
  }

  async list(opts: ListOptions = {}): Promise<LeaseInfo[]> {
    const bad: { name: string; e: unknown }[] = [];
    const out = await this.readTx("list", () => {
      const now = this.now();
      const out: LeaseInfo[] = [];
      for (const raw of this.stmts.all.all() as Record<string, unknown>[]) {
        const name = typeof raw.name === "string" ? raw.name : String(raw.name);
        try {
          validateLeaseName(name);
          const i = this.info(name, parseRow(name, raw), now);
          if (i) out.push(i);
        } catch (e) {
          // One bad row is reported, not a reason to hide every other lease.
          bad.push({ name, e });
        }
      }
      return out;
    });
    for (const b of bad) reportInvalid(opts, undefined, b.name, b.e);
    return out;
  }

  async forceRelease(name: string): Promise<boolean> {
    validateLeaseName(name);
    return this.write("forceRelease", () => {
      const r = this.row(name);
      if (!r || this.remaining(r, this.now()) <= 0n) return false;
      this.stmts.clear.run(name);
      return true;
    });
  }

  async putFenced(
    lease: Pick<LeaseRef, "name" | "holder" | "token">,
    key: string,
    value: string,
    opts?: { expect?: string | null },
  ): Promise<FencedPutResult> {
    validateFencedPut(lease, key, value, opts);
    return this.write("putFenced", (): FencedPutResult => {
      const r = this.row(lease.name);
      if (!r || r.token !== lease.token) return { ok: false, reason: "fenced" };
      if (opts && opts.expect !== undefined) {
        const cur = this.fencedRow(lease.name, key);
        if ((cur?.value ?? null) !== opts.expect) return { ok: false, reason: "conflict" };
      }
      this.stmts.fencedPut.run(lease.name, key, value, lease.token);
      return { ok: true };
    });
  }

  private fencedRow(name: string, key: string): FencedValue | null {
    const r = this.stmts.fencedGet.get(name, key) as Record<string, unknown> | undefined;
    if (!r) return null;
    if (typeof r.value !== "string" || typeof r.token !== "bigint") {
      throw schemaError(`fenced value ${JSON.stringify(name)}/${JSON.stringify(key)}`);
    }
    return { value: r.value, token: r.token };
  }

  async getFenced(name: string, key: string): Promise<FencedValue | null> {
    validateLeaseName(name);
    validateFencedKey(key);
    return this.readTx("getFenced", () => this.fencedRow(name, key));
  }

  /** `await using store = …`: closes the store at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) this.db.close();
  }
}

function parseRow(name: string, r: Record<string, unknown>): LeaseRow {
  const { holder, token, expires, boot } = r;
  if (
    (holder !== null && typeof holder !== "string") ||
    typeof token !== "bigint" ||
    token < 1n ||
    typeof expires !== "bigint" ||
    typeof boot !== "string"
  ) {
    throw schemaError(
      `row ${JSON.stringify(name)} has holder=${typeof holder} token=${typeof token === "bigint" ? token : typeof token} expires=${typeof expires} boot=${typeof boot}`,
    );
  }
  return { holder, token, expires, boot };
}

function openFile(
  drivers: { Database?: BetterSqlite3; DatabaseSync?: NodeDatabaseSyncCtor },
  path: string,
): SqliteDb {
  if (path !== ":memory:") {
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (e) {
      throw new ConfigError(
        "store",
        `cannot create the folder of SQLite file ${JSON.stringify(path)}: ${(e as Error).message}`,
      );
    }
    try {
      if (statSync(path).isDirectory()) {
        throw new ConfigError("store", `${JSON.stringify(path)} is a directory, not a SQLite file`);
      }
    } catch (e) {
      if (e instanceof ConfigError) throw e;
    }
  }
  try {
    if (drivers.DatabaseSync) return fromNodeSqlite(new drivers.DatabaseSync(path), path);
    return fromBetterSqlite3(new drivers.Database!(path));
  } catch (e) {
    throw new ConfigError(
      "store",
      `cannot open SQLite file ${JSON.stringify(path)}: ${(e as Error).message}`,
    );
  }
}

/**
 * The file path in a `sqlite:` URL: `sqlite:./rel/path.db` (relative to the
 * working directory), `sqlite:/abs/path.db`, `sqlite:///abs/path.db`, or
 * `sqlite::memory:` (one process only; for tests).
 */
export function sqlitePathFromUrl(url: string): string {
  const m = /^sqlite:(.*)$/is.exec(url.trim());
  let rest = m?.[1] ?? "";
  if (rest.startsWith("//")) {
    rest = rest.slice(2);
    if (!rest.startsWith("/")) {
      throw new ConfigError(
        "store",
        `"${url}" has a host part; use sqlite:./relative/path.db, sqlite:/absolute/path.db or sqlite:///absolute/path.db`,
      );
    }
  }
  if (rest === ":memory:") return rest;
  if (rest === "" || rest.includes("\0") || rest.endsWith("/")) {
    throw new ConfigError(
      "store",
      `"${url}" does not name a file; use sqlite:./relative/path.db, sqlite:/absolute/path.db or sqlite:///absolute/path.db`,
    );
  }
  return resolve(rest);
}

/**
 * Opens a SQLite lease store from a `sqlite:PATH` URL, creating the file and
 * its folder. The driver is Node's built-in `node:sqlite` where this Node has
 * it (22.13 and later), else better-sqlite3 (`npm install better-sqlite3`);
 * `?driver=better-sqlite3` or `?driver=node:sqlite` at the end of the URL, or
 * the `driver` option, chooses.
 */
export async function openSqliteStore(
  url: string,
  _opts: OpenStoreOptions = {},
  storeOpts: SqliteStoreOptions & { driver?: SqliteDriverName } = {},
): Promise<SqliteStore> {
  const q = /\?driver=([^&#]*)$/.exec(url);
  const fromUrl = q ? decodeURIComponent(q[1]!) : undefined;
  const { driver: fromOpts, ...rest } = storeOpts;
  const driver = fromOpts ?? fromUrl;
  if (driver !== undefined && !(SQLITE_DRIVERS as readonly string[]).includes(driver)) {
    throw new ConfigError(
      "store ?driver",
      `must be ${SQLITE_DRIVERS.join(" or ")} (got ${JSON.stringify(driver)})`,
    );
  }
  const path = sqlitePathFromUrl(q ? url.slice(0, q.index) : url);
  if (driver !== "better-sqlite3") {
    const DatabaseSync = await loadNodeSqlite();
    if (DatabaseSync) return new SqliteStore(path, { ...rest, DatabaseSync });
    if (driver === "node:sqlite") {
      throw new ConfigError(
        "store ?driver",
        `node:sqlite needs Node 22.13 or later (this is ${process.versions.node})`,
      );
    }
  }
  const Database = await loadBetterSqlite3();
  if ("error" in Database) {
    throw new ConfigError(
      "store",
      `the sqlite store needs Node 22.13 or later (node:sqlite) or the better-sqlite3 package (npm install better-sqlite3) on Node ${process.versions.node}: ${Database.error}`,
    );
  }
  return new SqliteStore(path, { ...rest, Database });
}
