/** The SQLite lease store class; index.ts opens it from a URL. */
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError, StoreError } from "../../errors.js";
import { checkInt, MAX_TIMER_MS } from "../../limits.js";
import { type Logger, noopLogger } from "../../logger.js";
import { toStoreError } from "../../store/classify.js";
import { reportInvalid } from "../../store/invalid.js";
import type {
  AcquireItem,
  AcquireResult,
  FencedPutResult,
  FencedValue,
  LeaseEvent,
  LeaseInfo,
  LeaseRef,
  LeaseStore,
  ListOptions,
  RenewItem,
  RenewResult,
  Unwatch,
} from "../../store/types.js";
import {
  validateAcquire,
  validateFencedGet,
  validateFencedPut,
  validateLeaseName,
  validateLeaseRef,
  validateReleaseItems,
  validateRenew,
} from "../../store/validate.js";
import { closedError, schemaError } from "../common/errors.js";
import { acquireMany } from "./acquire-many.js";
import { classifySqlite } from "./classify.js";
import { fakedClockReason, hostBootId, hostMonotonicMs } from "./clock.js";
import {
  type BetterSqlite3,
  fromBetterSqlite3,
  fromNodeSqlite,
  isBetterSqlite3Db,
  isNodeSqliteDb,
  type NodeDatabaseSync,
  type NodeDatabaseSyncCtor,
  type SqliteDb,
  type SqliteDriverName,
  type SqliteStatement,
} from "./driver.js";
import { doorbellPath, type LiveTerm, SqliteDoorbell } from "./notify.js";
import { renewMany } from "./renew-many.js";

type BetterDatabase = import("better-sqlite3").Database;

/** Default name of the lease table. The fenced-values table is `<table>_fenced`. */
export const SQLITE_DEFAULT_TABLE = "tenure_leases";
/** Default milliseconds a writer waits for the file lock before SQLITE_BUSY (a transient error). */
export const SQLITE_DEFAULT_BUSY_TIMEOUT_MS = 2000;

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** Largest TTL the store accepts; an expiry further away than this means the clock restarted. */
const MAX_TTL_MS = BigInt(MAX_TIMER_MS);

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
   * Default: `process.hrtime.bigint() / 1e6` (CLOCK_MONOTONIC) less this
   * process's time-namespace offset; a default clock that reads ahead of the
   * kernel's boot clock (faked by libfaketime) fails the constructor with a
   * `StoreError` of kind `config`. Inject only in tests.
   */
  monotonicNow?: () => bigint;
  /**
   * Identifies the current boot of the host; rows written under another boot
   * id are expired. Default: /proc/sys/kernel/random/boot_id, or `"unknown"`
   * where that file does not exist (then a stored expiry more than the maximum
   * TTL ahead of the clock is also taken as "written before a reboot").
   */
  bootId?: string;
  /**
   * Release notifications between the processes of the host through the
   * doorbell file `<db>-tenure-notify` (./notify.ts): `watch` works and
   * `notifies` is true for a database file. Default true; false: no doorbell
   * file, followers poll at the lease's expiry.
   */
  notify?: boolean;
  /** Where doorbell trouble and throwing watchers are logged. Default: silent. */
  logger?: Logger;
}

export { hostBootId, hostMonotonicMs } from "./clock.js";

interface LeaseRow {
  holder: string | null;
  token: bigint;
  expires: bigint;
  boot: string;
}

/**
 * A lease store in a SQLite file. Construct it from a file path (the file and
 * its folder are created) or from an open better-sqlite3 `Database` (not
 * closed by {@link close}).
 */
export class SqliteStore implements LeaseStore {
  readonly kind = "sqlite";
  /**
   * True for a database file (not `:memory:`) unless `notify: false`: watchers
   * are woken through the doorbell file `<db>-tenure-notify` (./notify.ts).
   */
  readonly notifies: boolean;
  private readonly doorbell: SqliteDoorbell | null;
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
    const busy = checkInt(
      "busyTimeoutMs",
      opts.busyTimeoutMs ?? SQLITE_DEFAULT_BUSY_TIMEOUT_MS,
      0,
      60_000,
    );
    this.now = opts.monotonicNow ?? hostMonotonicMs;
    if (!opts.monotonicNow) {
      // Expiry written with a faked clock would mean another instant to every other process.
      const faked = fakedClockReason();
      if (faked) {
        throw new StoreError(`tenure sqlite: ${faked}`, { transient: false, kind: "config" });
      }
    }
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
    this.doorbell =
      opts.notify !== false && !this.db.memory && this.path !== "" && this.path !== ":memory:"
        ? new SqliteDoorbell(
            doorbellPath(this.path),
            (names) => this.liveTerms(names),
            opts.logger ?? noopLogger,
          )
        : null;
    this.notifies = this.doorbell !== null;
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
    return this.inTransaction("immediate", op, fn);
  }

  private readTx<T>(op: string, fn: () => T): T {
    return this.inTransaction("deferred", op, fn);
  }

  private inTransaction<T>(mode: "immediate" | "deferred", op: string, fn: () => T): T {
    this.check(op);
    try {
      return this.db.transaction(mode, fn);
    } catch (e) {
      throw toStoreError("sqlite", op, e, classifySqlite);
    }
  }

  private check(op: string): void {
    if (this.closed) throw closedError("sqlite", op);
  }

  private row(op: string, name: string): LeaseRow | null {
    const r = this.stmts.get.get(name) as Record<string, unknown> | undefined;
    return r ? parseRow(op, name, r) : null;
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
    validateAcquire(name, holder, ttlMs);
    const res = this.write("acquire", () =>
      this.acquireAt("acquire", name, holder, ttlMs, this.now()),
    );
    // A new term: a leader watching learns at once that its term is over.
    if (res.acquired) this.doorbell?.ring();
    return res;
  }

  /** Every item in one `BEGIN IMMEDIATE` transaction: see acquire-many.ts. */
  async acquireMany(items: readonly AcquireItem[]): Promise<AcquireResult[]> {
    const res = await acquireMany(
      {
        write: (fn) => this.write("acquireMany", fn),
        now: this.now,
        acquire: (n, h, t, now) => this.acquireAt("acquireMany", n, h, t, now),
      },
      items,
    );
    if (res.some((r) => r.acquired)) this.doorbell?.ring();
    return res;
  }

  /** One acquire inside a write transaction, judged at monotonic time `now`. */
  private acquireAt(
    op: string,
    name: string,
    holder: string,
    ttlMs: number,
    now: bigint,
  ): AcquireResult {
    const r = this.row(op, name);
    const cur = r ? this.info(name, r, now) : null;
    if (cur && cur.holder !== holder) return { acquired: false, current: cur };
    if (cur) {
      // Held live by this holder: its term goes on (the same token), extended as by a renewal.
      this.stmts.extend.run(now + BigInt(ttlMs), this.boot, name);
      return { acquired: true, lease: { name, holder, token: cur.token } };
    }
    const token = (r?.token ?? 0n) + 1n;
    this.stmts.upsert.run(name, holder, token, now + BigInt(ttlMs), this.boot);
    return { acquired: true, lease: { name, holder, token } };
  }

  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateRenew(lease, ttlMs);
    return this.write("renew", () => this.renewAt("renew", lease, ttlMs, this.now()));
  }

  /** Every item in one `BEGIN IMMEDIATE` transaction: see renew-many.ts. */
  renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return renewMany(
      {
        write: (fn) => this.write("renewMany", fn),
        now: this.now,
        renew: (l, t, now) => this.renewAt("renewMany", l, t, now),
      },
      items,
    );
  }

  /** The renewal of one term inside a write transaction, judged at monotonic time `now`. */
  private renewAt(op: string, lease: LeaseRef, ttlMs: number, now: bigint): RenewResult {
    const r = this.row(op, lease.name);
    const cur = r ? this.info(lease.name, r, now) : null;
    if (!cur || cur.holder !== lease.holder || cur.token !== lease.token) {
      return { renewed: false, current: cur };
    }
    this.stmts.extend.run(now + BigInt(ttlMs), this.boot, lease.name);
    return { renewed: true };
  }

  async release(lease: LeaseRef): Promise<boolean> {
    validateLeaseRef(lease);
    const wasLive = this.write("release", () => this.releaseAt("release", lease, this.now()));
    // Rung after the commit: a watcher that looks sees the lease free.
    if (wasLive) this.doorbell?.ring();
    return wasLive;
  }

  /**
   * Every item in one `BEGIN IMMEDIATE` transaction, each judged as `release`
   * judges it, one after the other; the doorbell is rung once after the
   * commit when any was released. A row that is not a lease answers false for
   * its item instead of failing the batch.
   */
  async releaseMany(leases: readonly LeaseRef[]): Promise<boolean[]> {
    validateReleaseItems(leases);
    if (leases.length === 0) return [];
    const out = this.write("releaseMany", () => {
      const now = this.now();
      return leases.map((l) => {
        try {
          return this.releaseAt("releaseMany", l, now);
        } catch (e) {
          if (e instanceof StoreError && e.kind === "schema") return false;
          throw e;
        }
      });
    });
    if (out.includes(true)) this.doorbell?.ring();
    return out;
  }

  /** The release of one term inside a write transaction, at monotonic time `now`; true when it was live. */
  private releaseAt(op: string, lease: LeaseRef, now: bigint): boolean {
    const r = this.row(op, lease.name);
    if (!r || r.holder !== lease.holder || r.token !== lease.token) return false;
    const wasLive = this.remaining(r, now) > 0n;
    this.stmts.clear.run(lease.name);
    return wasLive;
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    return this.readTx("read", () => {
      const r = this.row("read", name);
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
          const i = this.info(name, parseRow("list", name, raw), now);
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
    const cleared = this.write("forceRelease", () => {
      const r = this.row("forceRelease", name);
      if (!r || this.remaining(r, this.now()) <= 0n) return false;
      this.stmts.clear.run(name);
      return true;
    });
    if (cleared) this.doorbell?.ring();
    return cleared;
  }

  /**
   * Calls `onChange` when lease `name` is released (`released`) or taken by a
   * new term (`acquired`), by any process of the host on this file; `changed`
   * when the doorbell file had to be watched anew (events may have been
   * missed). Refused on an in-memory database or with `notify: false`.
   */
  async watch(name: string, onChange: (event: LeaseEvent) => void): Promise<Unwatch> {
    validateLeaseName(name);
    this.check("watch");
    if (!this.doorbell) {
      throw new ConfigError(
        "store",
        "watch needs a SQLite database file with notify enabled (not :memory:, not notify: false)",
      );
    }
    try {
      return await this.doorbell.watch(name, onChange);
    } catch (e) {
      throw toStoreError("sqlite", "watch", e, classifySqlite);
    }
  }

  /** What the doorbell's look finds for each of `names`, in one read transaction. */
  private liveTerms(names: readonly string[]): LiveTerm[] {
    return this.readTx("watch", () => {
      const now = this.now();
      return names.map((name) => {
        const r = this.row("watch", name);
        if (!r) return null;
        const live = this.info(name, r, now);
        return { holder: live?.holder ?? null, token: r.token };
      });
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
      const r = this.row("putFenced", lease.name);
      if (!r || r.token !== lease.token) return { ok: false, reason: "fenced" };
      if (opts && opts.expect !== undefined) {
        const cur = this.fencedRow("putFenced", lease.name, key);
        if ((cur?.value ?? null) !== opts.expect) return { ok: false, reason: "conflict" };
      }
      this.stmts.fencedPut.run(lease.name, key, value, lease.token);
      return { ok: true };
    });
  }

  private fencedRow(op: string, name: string, key: string): FencedValue | null {
    const r = this.stmts.fencedGet.get(name, key) as Record<string, unknown> | undefined;
    if (!r) return null;
    if (typeof r.value !== "string" || typeof r.token !== "bigint") {
      throw schemaError(
        "sqlite",
        op,
        `fenced value ${JSON.stringify(name)}/${JSON.stringify(key)}`,
      );
    }
    return { value: r.value, token: r.token };
  }

  async getFenced(name: string, key: string): Promise<FencedValue | null> {
    validateFencedGet(name, key);
    return this.readTx("getFenced", () => this.fencedRow("getFenced", name, key));
  }

  /** `await using store = …`: closes the store at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.doorbell?.close();
    if (this.owned) this.db.close();
  }
}

function parseRow(op: string, name: string, r: Record<string, unknown>): LeaseRow {
  const { holder, token, expires, boot } = r;
  if (
    (holder !== null && typeof holder !== "string") ||
    typeof token !== "bigint" ||
    token < 1n ||
    typeof expires !== "bigint" ||
    typeof boot !== "string"
  ) {
    throw schemaError(
      "sqlite",
      op,
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
