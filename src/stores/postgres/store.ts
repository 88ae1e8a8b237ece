/** The PostgreSQL lease store class; index.ts opens it from a URL. */
import { ConfigError, StoreError } from "../../errors.js";
import { type Logger, noopLogger } from "../../logger.js";
import { errorCode, toStoreError } from "../../store/classify.js";
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
import { WatcherSet } from "../common/watchers.js";
import { acquireMany } from "./acquire-many.js";
import {
  isPgPool,
  type Listener,
  PgListener,
  type PgQueryTarget,
  type PgRow,
  type PostgresJsLike,
  pgQueryable,
  postgresJsListener,
  postgresJsQueryable,
  type Queryable,
} from "./adapters.js";
import { classifyPostgres } from "./classify.js";
import { fence, type TermRef, termParams } from "./fence.js";
import { run } from "./query.js";
import { renewMany } from "./renew-many.js";
import { RenewBatcher } from "./renewals.js";
import { checkPgToken, parseInfo, parseToken, pgArray } from "./rows.js";
import * as SQL from "./sql.js";
import { PG_DEFAULT_TABLE, type PostgresTableOptions, tablesFor, timeoutFor } from "./tables.js";

/**
 * How soon a try is worth repeating when the lease row was being changed by
 * another transaction (an acquire, renewal or release in flight, or a caller's
 * `fence`): the acquire does not wait for that lock, it answers at once.
 */
export const PG_BUSY_RETRY_MS = 20;
/** Default `application_name` of connections the store opens itself. */
export const PG_DEFAULT_APPLICATION_NAME = "tenure";

export interface PostgresStoreOptions extends PostgresTableOptions {
  /** A `pg` Pool (or Client). Not closed by {@link PostgresStore.close}. */
  pool?: PgQueryTarget;
  /** A postgres.js `sql` instance. Not closed by {@link PostgresStore.close}. */
  sql?: PostgresJsLike;
  /** Any other driver, through the one-method {@link Queryable} adapter. */
  queryable?: Queryable;
  /**
   * True when the connection goes through a transaction-mode pooler
   * (PgBouncer): `notifies` is false and no LISTEN connection is opened
   * (followers poll at the known expiry). Default false.
   */
  pooled?: boolean;
  /**
   * LISTEN connection for {@link PostgresStore.watch}. Default: derived from
   * `pool` or `sql`, and none when `pooled`. Given explicitly it is used even
   * when `pooled` (a direct connection beside the pooled one: e.g.
   * `new PgListener(directPool, logger)`), so `notifies` is true again.
   */
  listener?: Listener;
  /**
   * Create the tables with `CREATE TABLE IF NOT EXISTS` on first use.
   * Default true; set false when migrations own the schema (see {@link postgresSchemaSql}).
   */
  createTables?: boolean;
  /** Where reconnects and notification trouble are logged. Default: silent. */
  logger?: Logger;
  /** Called by {@link PostgresStore.close}, for connections the store opened itself. */
  onClose?: () => Promise<void>;
}

/**
 * A lease store in a PostgreSQL table. Pass `pool` (pg), `sql` (postgres.js)
 * or `queryable`; tables are created on first use unless `createTables` is false.
 */
export class PostgresStore implements LeaseStore {
  readonly kind = "postgres";
  readonly notifies: boolean;
  private readonly q: Queryable;
  private readonly t: SQL.Tables & { channel: string };
  private readonly timeoutMs: number;
  private readonly listener: Listener | null;
  private readonly createTables: boolean;
  private readonly logger: Logger;
  private readonly onClose: (() => Promise<void>) | undefined;
  private readonly tableOpts: PostgresTableOptions;
  private ready: Promise<void> | null = null;
  private closed = false;
  private readonly watchers: WatcherSet;
  private stopListening: Promise<() => Promise<void>> | null = null;
  private readonly renewals: RenewBatcher;

  constructor(opts: PostgresStoreOptions) {
    this.t = tablesFor(opts);
    this.timeoutMs = timeoutFor(opts);
    this.tableOpts = {
      table: opts.table ?? PG_DEFAULT_TABLE,
      queryTimeoutMs: this.timeoutMs,
      ...(opts.schema ? { schema: opts.schema } : {}),
    };
    this.logger = opts.logger ?? noopLogger;
    this.createTables = opts.createTables ?? true;
    this.onClose = opts.onClose;
    const sources = [opts.pool, opts.sql, opts.queryable].filter((x) => x !== undefined);
    if (sources.length !== 1) {
      throw new ConfigError(
        "pool",
        "pass exactly one of pool (pg), sql (postgres.js) or queryable",
      );
    }
    if (opts.queryable) this.q = opts.queryable;
    else if (opts.sql) this.q = postgresJsQueryable(opts.sql);
    else this.q = pgQueryable(opts.pool as PgQueryTarget);
    const pooled = opts.pooled ?? false;
    let listener: Listener | null = opts.listener ?? null;
    if (!pooled) {
      if (!listener && opts.sql) listener = postgresJsListener(opts.sql);
      if (!listener && opts.pool && isPgPool(opts.pool))
        listener = new PgListener(opts.pool, this.logger);
    }
    this.listener = listener;
    this.notifies = listener !== null;
    this.watchers = new WatcherSet(this.logger);
    this.renewals = new RenewBatcher((op, text, params) => this.exec(op, text, params), this.t);
  }

  /** A store over a postgres.js `sql` instance (not closed by {@link close}). */
  static fromPostgresJs(
    sql: PostgresJsLike,
    opts: Omit<PostgresStoreOptions, "sql" | "pool" | "queryable"> = {},
  ): PostgresStore {
    return new PostgresStore({ ...opts, sql });
  }

  /** A store over a `pg` Pool or Client (not closed by {@link close}). */
  static fromPg(
    pool: PgQueryTarget,
    opts: Omit<PostgresStoreOptions, "sql" | "pool" | "queryable"> = {},
  ): PostgresStore {
    return new PostgresStore({ ...opts, pool });
  }

  /** Creates (if allowed) and checks the tables. Called by every operation; retried after a failure. */
  async init(): Promise<void> {
    this.ready ??= this.doInit().catch((e: unknown) => {
      this.ready = null;
      throw e;
    });
    return this.ready;
  }

  private async doInit(): Promise<void> {
    const probe = () => run(this.q, "check tables", SQL.probe(this.t), [], this.timeoutMs);
    try {
      await probe();
      return;
    } catch (e) {
      if (!this.createTables || !(e instanceof StoreError) || e.code !== "42P01") throw e;
    }
    for (const stmt of SQL.ddl(this.t)) {
      try {
        await run(this.q, "create table", stmt, [], this.timeoutMs);
      } catch (e) {
        // Concurrent CREATE TABLE IF NOT EXISTS can collide in the catalog: the other one won.
        const code = e instanceof StoreError ? e.code : errorCode(e);
        // 23505 unique_violation / 42P07 duplicate_table / 42710 duplicate_object (the row type).
        if (code !== "23505" && code !== "42P07" && code !== "42710") throw e;
      }
    }
    await probe();
  }

  private async exec(op: string, text: string, params: readonly string[]): Promise<PgRow[]> {
    if (this.closed) throw closedError("postgres", op);
    await this.init();
    return run(this.q, op, text, params, this.timeoutMs);
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    validateAcquire(name, holder, ttlMs);
    let rows: PgRow[];
    try {
      rows = await this.exec("acquire", SQL.acquire(this.t), [name, holder, String(ttlMs)]);
    } catch (e) {
      // 22003 numeric_value_out_of_range: the row's token is the bigint maximum. The statement
      // was refused as a whole, so nothing was written; no new term can be granted.
      if (e instanceof StoreError && e.code === "22003") throw await this.tokenOverflow(name, e);
      throw e;
    }
    const r = rows[0];
    if (r?.won === true) {
      return {
        acquired: true,
        lease: { name, holder, token: parseToken(r.token, "acquire", "acquired") },
      };
    }
    if (r && r.busy !== true) return { acquired: false, current: parseInfo(r, "acquire", name) };
    // The row is being changed by another transaction (locked, or changed after this
    // statement's snapshot): nobody is named, the caller tries again shortly.
    return { acquired: false, current: null, retryInMs: PG_BUSY_RETRY_MS };
  }

  private async tokenOverflow(name: string, cause: StoreError): Promise<StoreError> {
    const raw = await this.exec("acquire", SQL.rawToken(this.t), [name]).catch(() => []);
    const token = raw[0]?.token;
    return schemaError(
      "postgres",
      "acquire",
      `row ${JSON.stringify(name)}: token ${typeof token === "string" ? token : "?"} leaves no larger bigint for a new term`,
      { code: "22003", cause },
    );
  }

  /** Renewals are coalesced into batches: see {@link RenewBatcher}. */
  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateRenew(lease, ttlMs);
    checkPgToken(lease.token, "lease.token");
    return this.renewals.renew(lease, ttlMs);
  }
  /**
   * Every item in one statement: see acquire-many.ts. A row whose token is
   * the bigint maximum (22003) fails the batch as it fails `acquire`.
   */
  acquireMany(items: readonly AcquireItem[]): Promise<AcquireResult[]> {
    return acquireMany(
      (op, text, params) => this.exec(op, text, params),
      this.t,
      items,
      PG_BUSY_RETRY_MS,
    );
  }

  /** Every item in one statement: see renew-many.ts. */
  renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return renewMany((op, text, params) => this.exec(op, text, params), this.t, items);
  }

  async release(lease: LeaseRef): Promise<boolean> {
    validateLeaseRef(lease);
    checkPgToken(lease.token, "lease.token");
    const rows = await this.exec("release", SQL.release(this.t), [
      lease.name,
      lease.holder,
      lease.token.toString(),
      this.t.channel,
    ]);
    return rows.length > 0;
  }

  /**
   * Every item in one statement ({@link SQL.releaseMany}): one commit, one
   * `pg_notify` per released lease. The same term twice is sent once; its
   * first item answers, the others find it released (false).
   */
  async releaseMany(leases: readonly LeaseRef[]): Promise<boolean[]> {
    validateReleaseItems(leases);
    for (const [i, l] of leases.entries()) checkPgToken(l.token, `leases[${i}].token`);
    if (leases.length === 0) return [];
    const key = (name: string, holder: string, token: string) => `${name}\n${holder}\n${token}`;
    const seen = new Set<string>();
    const rows: LeaseRef[] = [];
    const first = leases.map((l) => {
      const k = key(l.name, l.holder, l.token.toString());
      if (seen.has(k)) return false;
      seen.add(k);
      rows.push(l);
      return true;
    });
    const answer = await this.exec("releaseMany", SQL.releaseMany(this.t), [
      pgArray(rows.map((r) => r.name)),
      pgArray(rows.map((r) => r.holder)),
      pgArray(rows.map((r) => r.token.toString())),
      this.t.channel,
    ]);
    const released = new Set(
      answer.map((r) => key(String(r.name), String(r.holder), String(r.token))),
    );
    return leases.map(
      (l, i) => first[i]! && released.has(key(l.name, l.holder, l.token.toString())),
    );
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    const rows = await this.exec("read", SQL.read(this.t), [name]);
    return rows[0] ? parseInfo(rows[0], "read", name) : null;
  }

  async list(opts: ListOptions = {}): Promise<LeaseInfo[]> {
    const rows = await this.exec("list", SQL.list(this.t), []);
    const out: LeaseInfo[] = [];
    for (const r of rows) {
      const name = typeof r.name === "string" ? r.name : String(r.name);
      try {
        validateLeaseName(name);
        out.push(parseInfo(r, "list", name));
      } catch (e) {
        reportInvalid(opts, this.logger, name, e);
      }
    }
    return out;
  }

  async forceRelease(name: string): Promise<boolean> {
    validateLeaseName(name);
    const rows = await this.exec("forceRelease", SQL.forceRelease(this.t), [name, this.t.channel]);
    return rows.length > 0;
  }

  /** Writes only for the term in force: holder and token of `lease` match the live row. */
  async putFenced(
    lease: Pick<LeaseRef, "name" | "holder" | "token">,
    key: string,
    value: string,
    opts?: { expect?: string | null },
  ): Promise<FencedPutResult> {
    validateFencedPut(lease, key, value, opts);
    checkPgToken(lease.token, "lease.token");
    const expect = opts?.expect;
    const mode = expect === undefined ? "any" : expect === null ? "absent" : "equals";
    const [name, token, holder] = termParams(lease, "lease");
    const params = [name, token, key, value, holder];
    if (typeof expect === "string") params.push(expect);
    const rows = await this.exec("putFenced", SQL.putFenced(this.t, mode), params);
    const r = rows[0];
    if (!r || Number(r.lease_ok) === 0) return { ok: false, reason: "fenced" };
    return Number(r.written) > 0 ? { ok: true } : { ok: false, reason: "conflict" };
  }

  async getFenced(name: string, key: string): Promise<FencedValue | null> {
    validateFencedGet(name, key);
    const rows = await this.exec("getFenced", SQL.getFenced(this.t), [name, key]);
    const r = rows[0];
    if (!r) return null;
    const what = `fenced value ${JSON.stringify(key)}`;
    if (typeof r.value !== "string") throw schemaError("postgres", "getFenced", what);
    return { value: r.value, token: parseToken(r.token, "getFenced", what) };
  }

  /**
   * Release notifications over LISTEN (direct connections only; `notifies`
   * is false behind a transaction pooler and this rejects). After the LISTEN
   * connection reconnects, every watcher gets a `changed` event, since
   * notifications may have been missed.
   */
  async watch(name: string, onChange: (event: LeaseEvent) => void): Promise<Unwatch> {
    validateLeaseName(name);
    if (this.closed) throw closedError("postgres", "watch");
    const listener = this.listener;
    if (!listener) {
      throw new StoreError(
        "tenure postgres: watch needs a direct connection (notifications are off behind a transaction pooler)",
        { transient: false, kind: "config" },
      );
    }
    this.watchers.add(name, onChange);
    this.stopListening ??= listener
      .listen(
        this.t.channel,
        (payload) => this.watchers.emit(payload, { name: payload, type: "released" }),
        () => {
          for (const n of this.watchers.keys()) this.watchers.emit(n, { name: n, type: "changed" });
        },
      )
      .catch((e: unknown) => {
        this.stopListening = null;
        throw toStoreError("postgres", "listen", e, classifyPostgres);
      });
    try {
      await this.stopListening;
    } catch (e) {
      this.watchers.delete(name, onChange);
      throw e;
    }
    return async () => {
      this.watchers.delete(name, onChange);
    };
  }

  /** {@link fence} on this store's table: call inside your transaction before COMMIT. */
  async fence(tx: unknown, term: TermRef): Promise<void> {
    return fence(tx, term, this.tableOpts);
  }

  /** `await using store = …`: closes the store at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    const stop = await this.stopListening?.catch(() => null);
    await stop?.().catch(() => {});
    if (this.listener instanceof PgListener) await this.listener.close();
    await this.onClose?.();
  }
}
