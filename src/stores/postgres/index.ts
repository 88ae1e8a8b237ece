/**
 * PostgreSQL lease store (`postgres://…`, `postgresql://…`): a lease table,
 * one statement per operation with the database's clock, safe behind
 * PgBouncer in transaction mode; LISTEN/NOTIFY for fast handoff when the
 * connection is direct; `fence(tx, term)` for the caller's own transactions.
 * Works with a `pg` Pool/Client or a postgres.js `sql` instance.
 */
import { ConfigError, FencedError, StoreError } from "../../errors.js";
import { type Logger, noopLogger } from "../../logger.js";
import { errorCode, redactSecrets, redactUrl, toStoreError } from "../../store/classify.js";
import { reportInvalid } from "../../store/invalid.js";
import type { OpenStoreOptions } from "../../store/open.js";
import type {
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
  validateFencedKey,
  validateFencedPut,
  validateHolder,
  validateLeaseName,
  validateLeaseRef,
  validateTtl,
} from "../../store/validate.js";
import {
  isPgPool,
  isPostgresJs,
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
import { type PgRenewManyContext, renewMany } from "./renew-many.js";
import * as SQL from "./sql.js";

export type { Listener, PgQueryTarget, PgRow, PostgresJsLike, Queryable } from "./adapters.js";
export { isPostgresJs, PgListener, pgQueryable, postgresJsQueryable } from "./adapters.js";
export { classifyPostgres } from "./classify.js";

/** Default lease table; fenced values live in `<table>_fenced`. */
export const PG_DEFAULT_TABLE = "tenure_leases";
/** Default per-query timeout in ms: a black-holed connection fails within this (transient). */
export const PG_DEFAULT_QUERY_TIMEOUT_MS = 5000;
/**
 * How soon a try is worth repeating when the lease row was being changed by
 * another transaction (an acquire, renewal or release in flight, or a caller's
 * `fence`): the acquire does not wait for that lock, it answers at once.
 */
export const PG_BUSY_RETRY_MS = 20;
/** Default `application_name` of connections the store opens itself. */
export const PG_DEFAULT_APPLICATION_NAME = "tenure";

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Where the lease table is and how queries are bounded; shared by the store and {@link fence}. */
export interface PostgresTableOptions {
  /** Schema of the lease tables. Default: the connection's `search_path` (usually `public`). */
  schema?: string;
  /** Lease table name (letters, digits, `_`). Default {@link PG_DEFAULT_TABLE}. */
  table?: string;
  /** Per-query timeout in ms (1–600000). Default {@link PG_DEFAULT_QUERY_TIMEOUT_MS}. */
  queryTimeoutMs?: number;
}

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

function tablesFor(opts: PostgresTableOptions): SQL.Tables & { channel: string } {
  const table = opts.table ?? PG_DEFAULT_TABLE;
  if (!IDENT.test(table)) {
    throw new ConfigError("table", `must match ${IDENT} (got ${JSON.stringify(table)})`);
  }
  if (opts.schema !== undefined && !IDENT.test(opts.schema)) {
    throw new ConfigError("schema", `must match ${IDENT} (got ${JSON.stringify(opts.schema)})`);
  }
  const q = (n: string) => (opts.schema ? `"${opts.schema}"."${n}"` : `"${n}"`);
  return {
    leases: q(table),
    fenced: q(`${table}_fenced`),
    channel: (opts.schema ? `${opts.schema}.${table}` : table).slice(0, 63),
  };
}

function timeoutFor(opts: PostgresTableOptions): number {
  const t = opts.queryTimeoutMs ?? PG_DEFAULT_QUERY_TIMEOUT_MS;
  if (!Number.isInteger(t) || t < 1 || t > 600_000) {
    throw new ConfigError("queryTimeoutMs", `must be an integer from 1 to 600000 (got ${t})`);
  }
  return t;
}

/** The DDL of the lease tables, for users whose migrations own the schema. */
export function postgresSchemaSql(opts: PostgresTableOptions = {}): string[] {
  return SQL.ddl(tablesFor(opts));
}

/** Runs one statement with a hard client-side bound, classifying every failure. */
async function run(
  q: Queryable,
  op: string,
  text: string,
  params: readonly string[],
  timeoutMs: number,
): Promise<PgRow[]> {
  let timer: NodeJS.Timeout | undefined;
  const p = q.query(text, params, timeoutMs);
  const bound = new Promise<never>((_, reject) => {
    // A little later than the driver's own timeout, which cancels or drops the connection.
    timer = setTimeout(
      () =>
        reject(
          new StoreError(`tenure postgres: ${op} failed: no answer within ${timeoutMs} ms`, {
            transient: true,
            kind: "timeout",
            code: "ETIMEDOUT",
          }),
        ),
      timeoutMs + 250,
    );
  });
  try {
    return await Promise.race([p, bound]);
  } catch (e) {
    p.catch(() => {});
    throw toStoreError("postgres", op, e, classifyPostgres);
  } finally {
    clearTimeout(timer);
  }
}

function schemaError(what: string): StoreError {
  return new StoreError(`tenure postgres: unexpected data in the lease table: ${what}`, {
    transient: false,
    kind: "schema",
  });
}

/** Largest PostgreSQL bigint: no token can follow it. */
const PG_MAX_TOKEN = 9_223_372_036_854_775_807n;

function parseToken(v: unknown, what: string): bigint {
  if (typeof v !== "string" || !/^[1-9][0-9]{0,18}$/.test(v) || BigInt(v) > PG_MAX_TOKEN) {
    throw schemaError(`${what}: token ${JSON.stringify(v)} is not a positive bigint`);
  }
  return BigInt(v);
}

/** What is wrong with a lease row, or null when it is a valid live lease. */
function rowProblem(r: PgRow): string | null {
  const ms = typeof r.ms === "string" ? Number(r.ms) : r.ms;
  if (typeof r.holder !== "string") return `holder ${JSON.stringify(r.holder)} is not text`;
  if (typeof ms !== "number" || Number.isNaN(ms)) return "expires_at is not a time";
  if (!Number.isFinite(ms)) return "expires_at is infinity (a lease must expire)";
  return null;
}

function parseInfo(r: PgRow, name: string): LeaseInfo {
  const row = `row ${JSON.stringify(name)}`;
  const problem = rowProblem(r);
  if (problem) throw schemaError(`${row}: ${problem}`);
  return {
    name,
    holder: r.holder as string,
    token: parseToken(r.token, row),
    expiresInMs: Math.max(0, Math.floor(Number(r.ms))),
  };
}

/** PostgreSQL holds tokens as bigint: a larger one cannot be a term of this store. */
function checkPgToken(token: bigint, field: string): void {
  if (token > PG_MAX_TOKEN) {
    throw new ConfigError(
      field,
      `must be at most ${PG_MAX_TOKEN} (PostgreSQL bigint), got ${token}`,
    );
  }
}

/** Renewals waiting for a batch. */
interface PendingRenew {
  readonly lease: LeaseRef;
  readonly ttlMs: number;
  readonly resolve: (r: RenewResult) => void;
  readonly reject: (e: unknown) => void;
}

/** Renewal statements out at once; further renewals queue and go out together. */
const RENEW_BATCHES_IN_FLIGHT = 2;
/** Most renewals in one statement. */
const RENEW_BATCH_MAX = 500;

/** A text[] literal: every element quoted, `"` and `\` escaped. */
export function pgArray(items: readonly string[]): string {
  return `{${items.map((x) => `"${x.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(",")}}`;
}

function queryableFor(x: unknown): Queryable {
  if (isPostgresJs(x)) return postgresJsQueryable(x);
  if (x && typeof (x as PgQueryTarget).query === "function") return pgQueryable(x as PgQueryTarget);
  throw new ConfigError(
    "tx",
    "must be a pg client inside BEGIN…COMMIT or a postgres.js transaction (sql.begin(tx => …))",
  );
}

/** The term a fenced call names: holder and token both must match the row in force. */
type TermRef = Pick<LeaseRef, "name" | "holder" | "token">;

function termParams(term: TermRef, field: string): [string, string, string] {
  if (typeof term?.holder !== "string" || typeof term.token !== "bigint") {
    throw new ConfigError(
      field,
      "must be the term itself ({ name, holder, token } with a bigint token), not only its token",
    );
  }
  return [term.name, term.token.toString(), term.holder];
}

/**
 * Verifies, inside the caller's own transaction `tx`, that `term` still holds
 * its lease (the row's holder and token are the term's, and it has not
 * expired), and locks the lease row (`FOR SHARE`) until that transaction
 * ends: no newer term can start before the caller's writes commit or roll
 * back. Throws {@link FencedError} when the term is stale. Call it before the
 * transaction's COMMIT (the lock is what makes the check hold at commit).
 */
export async function fence(
  tx: unknown,
  term: TermRef,
  opts: PostgresTableOptions = {},
): Promise<void> {
  const t = tablesFor(opts);
  const timeout = timeoutFor(opts);
  const q = queryableFor(tx);
  const params = termParams(term, "term");
  const rows = await run(q, "fence", SQL.fence(t), params, timeout);
  if (rows.length > 0) return;
  const cur = await run(q, "fence", SQL.fenceCurrent(t), [term.name], timeout);
  const tok = cur[0]?.token;
  throw new FencedError(term.name, term.token, tok === undefined ? null : parseToken(tok, "fence"));
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
  private readonly watchers = new Map<string, Set<(e: LeaseEvent) => void>>();
  private stopListening: Promise<() => Promise<void>> | null = null;
  private renewQueue: PendingRenew[] = [];
  private renewBatches = 0;

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
    if (this.closed) {
      throw new StoreError("tenure postgres: store is closed", {
        transient: false,
        kind: "closed",
      });
    }
    await this.init();
    return run(this.q, op, text, params, this.timeoutMs);
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    validateLeaseName(name);
    validateHolder(holder, "holder");
    validateTtl(ttlMs);
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
      return { acquired: true, lease: { name, holder, token: parseToken(r.token, "acquired") } };
    }
    if (r && r.busy !== true) return { acquired: false, current: parseInfo(r, name) };
    // The row is being changed by another transaction (locked, or changed after this
    // statement's snapshot): nobody is named, the caller tries again shortly.
    return { acquired: false, current: null, retryInMs: PG_BUSY_RETRY_MS };
  }

  private async tokenOverflow(name: string, cause: StoreError): Promise<StoreError> {
    const raw = await this.exec("acquire", SQL.rawToken(this.t), [name]).catch(() => []);
    const token = raw[0]?.token;
    return new StoreError(
      `tenure postgres: unexpected data in the lease table: row ${JSON.stringify(name)}: token ${typeof token === "string" ? token : "?"} leaves no larger bigint for a new term`,
      { transient: false, kind: "schema", code: "22003", cause },
    );
  }

  /**
   * Renewals are coalesced: while RENEW_BATCHES_IN_FLIGHT statements are out,
   * new renewals queue and go out together through {@link renewMany} (one
   * statement, one commit, one WAL flush), so one process can hold many
   * leases even when its callers renew one by one. A lone renewal uses the
   * one-lease statement. The elector's trust window counts from its own
   * call, so time spent queued only shortens it. (The shared renewal path
   * calls renewMany itself and bypasses the queue.)
   */
  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateLeaseRef(lease);
    checkPgToken(lease.token, "lease.token");
    validateTtl(ttlMs);
    return new Promise<RenewResult>((resolve, reject) => {
      this.renewQueue.push({ lease, ttlMs, resolve, reject });
      this.flushRenewals();
    });
  }

  /** Every item in one statement: see renew-many.ts. */
  renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return renewMany(this.batchContext("renewMany"), items);
  }

  private batchContext(op: string): PgRenewManyContext {
    return {
      exec: (text, params) => this.exec(op, text, params),
      text: SQL.renewMany(this.t),
      checkToken: checkPgToken,
      array: pgArray,
      parseInfo,
      schemaError,
    };
  }

  private flushRenewals(): void {
    while (this.renewQueue.length > 0 && this.renewBatches < RENEW_BATCHES_IN_FLIGHT) {
      const batch = this.renewQueue.splice(0, RENEW_BATCH_MAX);
      this.renewBatches += 1;
      const done = () => {
        this.renewBatches -= 1;
        this.flushRenewals();
      };
      if (batch.length === 1) {
        const one = batch[0]!;
        this.renewOne(one.lease, one.ttlMs).then(one.resolve, one.reject).finally(done);
      } else {
        renewMany(this.batchContext("renew"), batch)
          .then(
            (res) => {
              for (const [i, b] of batch.entries()) b.resolve(res[i]!);
            },
            (e: unknown) => {
              for (const b of batch) b.reject(e);
            },
          )
          .finally(done);
      }
    }
  }

  private async renewOne(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    const rows = await this.exec("renew", SQL.renew(this.t), [
      lease.name,
      lease.holder,
      lease.token.toString(),
      String(ttlMs),
    ]);
    const r = rows[0];
    if (r?.won === true) return { renewed: true };
    return { renewed: false, current: r ? parseInfo(r, lease.name) : null };
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

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    const rows = await this.exec("read", SQL.read(this.t), [name]);
    return rows[0] ? parseInfo(rows[0], name) : null;
  }

  async list(opts: ListOptions = {}): Promise<LeaseInfo[]> {
    const rows = await this.exec("list", SQL.list(this.t), []);
    const out: LeaseInfo[] = [];
    for (const r of rows) {
      const name = typeof r.name === "string" ? r.name : String(r.name);
      try {
        validateLeaseName(name);
        out.push(parseInfo(r, name));
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
    validateLeaseName(name);
    validateFencedKey(key);
    const rows = await this.exec("getFenced", SQL.getFenced(this.t), [name, key]);
    const r = rows[0];
    if (!r) return null;
    if (typeof r.value !== "string") throw schemaError(`fenced value ${JSON.stringify(key)}`);
    return { value: r.value, token: parseToken(r.token, `fenced value ${JSON.stringify(key)}`) };
  }

  /**
   * Release notifications over LISTEN (direct connections only; `notifies`
   * is false behind a transaction pooler and this rejects). After the LISTEN
   * connection reconnects, every watcher gets a `changed` event, since
   * notifications may have been missed.
   */
  async watch(name: string, onChange: (event: LeaseEvent) => void): Promise<Unwatch> {
    validateLeaseName(name);
    if (this.closed) {
      throw new StoreError("tenure postgres: store is closed", {
        transient: false,
        kind: "closed",
      });
    }
    const listener = this.listener;
    if (!listener) {
      throw new StoreError(
        "tenure postgres: watch needs a direct connection (notifications are off behind a transaction pooler)",
        { transient: false, kind: "config" },
      );
    }
    let set = this.watchers.get(name);
    if (!set) {
      set = new Set();
      this.watchers.set(name, set);
    }
    set.add(onChange);
    this.stopListening ??= listener
      .listen(
        this.t.channel,
        (payload) => this.dispatch(payload, "released"),
        () => {
          for (const n of this.watchers.keys()) this.dispatch(n, "changed");
        },
      )
      .catch((e: unknown) => {
        this.stopListening = null;
        throw toStoreError("postgres", "listen", e, classifyPostgres);
      });
    try {
      await this.stopListening;
    } catch (e) {
      set.delete(onChange);
      throw e;
    }
    return async () => {
      set?.delete(onChange);
    };
  }

  private dispatch(name: string, type: LeaseEvent["type"]): void {
    const set = this.watchers.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn({ name, type });
      } catch (e) {
        this.logger.warn("lease watcher threw", { lease: name, err: e });
      }
    }
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

/** URL parameters the store reads (and removes before the driver sees the URL). */
export const PG_URL_PARAMS = Object.freeze({
  /** `tenure_pooler=transaction`: behind a transaction-mode pooler (no LISTEN). `none`: direct (default). */
  pooler: "tenure_pooler",
  /** `tenure_table=NAME`: lease table. */
  table: "tenure_table",
  /** `tenure_schema=NAME`: schema of the lease tables. */
  schema: "tenure_schema",
  /** `tenure_timeout_ms=N`: per-query timeout. */
  timeout: "tenure_timeout_ms",
  /**
   * `tenure_listen=postgres://…` (URL-encoded): a direct connection for LISTEN
   * beside a pooled one, so watch works behind `tenure_pooler=transaction`.
   */
  listen: "tenure_listen",
});

/** Splits a postgres URL into the driver's URL and the store's own options. */
export function parsePostgresUrl(url: string): {
  connectionString: string;
  options: PostgresTableOptions & { pooled: boolean; listenUrl?: string };
} {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError("store", `"${redactUrl(url)}" is not a valid postgres:// URL`);
  }
  const p = u.searchParams;
  const options: PostgresTableOptions & { pooled: boolean; listenUrl?: string } = {
    pooled: false,
  };
  const pooler = p.get(PG_URL_PARAMS.pooler);
  if (pooler !== null) {
    if (pooler !== "transaction" && pooler !== "session" && pooler !== "none") {
      throw new ConfigError(
        "store",
        `${PG_URL_PARAMS.pooler} must be transaction, session or none (got ${JSON.stringify(pooler)})`,
      );
    }
    options.pooled = pooler === "transaction";
  }
  const table = p.get(PG_URL_PARAMS.table);
  if (table !== null) options.table = table;
  const schema = p.get(PG_URL_PARAMS.schema);
  if (schema !== null) options.schema = schema;
  const timeout = p.get(PG_URL_PARAMS.timeout);
  if (timeout !== null) {
    const n = Number(timeout);
    if (!/^\d+$/.test(timeout) || n < 1 || n > 600_000) {
      throw new ConfigError(
        "store",
        `${PG_URL_PARAMS.timeout} must be an integer from 1 to 600000 (got ${JSON.stringify(timeout)})`,
      );
    }
    options.queryTimeoutMs = n;
  }
  const listen = p.get(PG_URL_PARAMS.listen);
  if (listen !== null) {
    let ok = false;
    try {
      ok = /^postgres(ql)?:$/.test(new URL(listen).protocol);
    } catch {}
    if (!ok) {
      throw new ConfigError(
        "store",
        `${PG_URL_PARAMS.listen} must be a URL-encoded postgres:// URL of a direct connection (got "${redactUrl(listen)}")`,
      );
    }
    options.listenUrl = listen;
  }
  for (const k of Object.values(PG_URL_PARAMS)) p.delete(k);
  tablesFor(options);
  return { connectionString: u.toString(), options };
}

/**
 * Opens a PostgreSQL lease store from a URL with its own `pg` Pool, creating
 * the tables if missing. An unreachable server does not throw: the tables are
 * checked on the first call that reaches it, and calls fail with transient
 * errors until then; bad credentials and other fatal answers throw. URL parameters: see {@link PG_URL_PARAMS};
 * `application_name` and the usual libpq-style parameters pass through to `pg`.
 */
export async function openPostgresStore(
  url: string,
  opts: OpenStoreOptions = {},
  storeOpts: Omit<PostgresStoreOptions, "pool" | "sql" | "queryable" | "onClose"> = {},
): Promise<PostgresStore> {
  const { connectionString, options } = parsePostgresUrl(url);
  let Pool: typeof import("pg").Pool;
  try {
    const m = await import("pg");
    Pool = m.default?.Pool ?? m.Pool;
  } catch {
    throw new ConfigError("store", "the postgres store needs the pg package: npm install pg");
  }
  const logger = storeOpts.logger ?? opts.logger ?? noopLogger;
  const timeout = timeoutFor({ ...options, ...storeOpts });
  const hasAppName = /[?&]application_name=/.test(connectionString);
  const pool = new Pool({
    connectionString,
    max: 4,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: timeout,
    keepAlive: true,
    ...(hasAppName ? {} : { application_name: PG_DEFAULT_APPLICATION_NAME }),
  });
  // An idle connection killed by the server or a pooler must not crash the process.
  pool.on("error", (e) =>
    logger.debug("postgres idle connection failed", { err: redactSecrets(e.message) }),
  );
  const { listenUrl, ...tableOpts } = options;
  // A Pool that never runs a query: only its settings, for PgListener's dedicated Client.
  const listenPool = listenUrl ? new Pool({ ...pool.options, connectionString: listenUrl }) : null;
  const store = new PostgresStore({
    ...tableOpts,
    ...(listenPool
      ? {
          listener: new PgListener(
            listenPool as unknown as ConstructorParameters<typeof PgListener>[0],
            logger,
          ),
        }
      : {}),
    ...storeOpts,
    logger,
    pool,
    onClose: async () => {
      await pool.end();
      await listenPool?.end();
    },
  });
  try {
    await store.init();
  } catch (e) {
    // An unreachable server is not an error yet: every call retries init and
    // fails as transient until the server answers (as Redis and etcd do).
    if (e instanceof StoreError && e.transient) {
      logger.warn("postgres not reachable yet; calls fail until it answers", { err: e.message });
      return store;
    }
    await store.close().catch(() => {});
    throw e;
  }
  return store;
}
