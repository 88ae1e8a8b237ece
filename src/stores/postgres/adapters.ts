/**
 * The two drivers behind one narrow interface, so the store's SQL is written
 * once. Every query is sent unnamed (no prepared statement lives on a server
 * connection), so it works unchanged behind PgBouncer in transaction mode.
 */
import type { Logger } from "../../logger.js";

/** A row as the store reads it: column name → value. */
export type PgRow = Record<string, unknown>;

/** Anything that runs one parameterised SQL statement and returns its rows. */
export interface Queryable {
  query(text: string, params: readonly string[], timeoutMs: number): Promise<PgRow[]>;
}

/** A dedicated LISTEN connection. */
export interface Listener {
  /**
   * Listens on `channel`; resolves once LISTEN is active. `onReconnect` runs
   * after the connection was lost and listening again (notifications may
   * have been missed meanwhile). Returns a function that stops listening.
   */
  listen(
    channel: string,
    onPayload: (payload: string) => void,
    onReconnect: () => void,
  ): Promise<() => Promise<void>>;
}

/** The part of a `pg` Pool or Client the store uses. */
export interface PgQueryTarget {
  query(config: {
    text: string;
    values: unknown[];
    query_timeout?: number;
  }): Promise<{ rows: PgRow[] }>;
}

/** The part of a `pg` Pool needed to open a dedicated LISTEN client. */
interface PgPoolLike extends PgQueryTarget {
  Client: new (config: unknown) => PgClientLike;
  options: unknown;
}

interface PgClientLike {
  connect(): Promise<unknown>;
  query(text: string): Promise<unknown>;
  end(): Promise<void>;
  on(event: "notification", fn: (m: { channel: string; payload?: string }) => void): unknown;
  on(event: "error" | "end", fn: (e?: unknown) => void): unknown;
  removeAllListeners(): unknown;
}

/** A postgres.js `sql` instance or transaction (`sql.begin(tx => …)`). */
export interface PostgresJsLike {
  unsafe(
    query: string,
    params?: unknown[],
    opts?: { prepare?: boolean },
  ): Promise<unknown> & { cancel(): unknown };
  listen?(
    channel: string,
    onnotify: (value: string) => void,
    onlisten?: () => void,
  ): Promise<{ unlisten(): Promise<void> }>;
}

/** Is `x` a postgres.js sql instance or transaction? */
export function isPostgresJs(x: unknown): x is PostgresJsLike {
  return (
    (typeof x === "function" || (typeof x === "object" && x !== null)) &&
    typeof (x as { unsafe?: unknown }).unsafe === "function"
  );
}

/** Is `x` a `pg` Pool (has a Client class to open a dedicated LISTEN connection)? */
export function isPgPool(x: unknown): x is PgPoolLike {
  return (
    typeof x === "object" &&
    x !== null &&
    typeof (x as { Client?: unknown }).Client === "function" &&
    typeof (x as { connect?: unknown }).connect === "function" &&
    "totalCount" in x
  );
}

/** A {@link Queryable} over a `pg` Pool or Client (unnamed statements, per-query read timeout). */
export function pgQueryable(target: PgQueryTarget): Queryable {
  return {
    async query(text, params, timeoutMs) {
      const r = await target.query({ text, values: [...params], query_timeout: timeoutMs });
      return r.rows;
    },
  };
}

/** A {@link Queryable} over postgres.js (`prepare: false`; cancelled on timeout by the caller). */
export function postgresJsQueryable(sql: PostgresJsLike): Queryable & {
  cancelOnTimeout: true;
} {
  return {
    cancelOnTimeout: true,
    query(text, params, timeoutMs) {
      const q = sql.unsafe(text, [...params], { prepare: false });
      const timer = setTimeout(() => {
        try {
          cancelQuietly(q);
        } catch {
          // the query may have finished meanwhile
        }
      }, timeoutMs);
      return Promise.resolve(q).then(
        (rows) => {
          clearTimeout(timer);
          return rows as PgRow[];
        },
        (e: unknown) => {
          clearTimeout(timer);
          throw e;
        },
      );
    },
  };
}

/**
 * Cancels a postgres.js query without leaving a rejection unhandled.
 * postgres.js sends the cancel request on a connection of its own and its
 * `cancel()` drops the promise of that request (postgres 3.4: `return
 * this.canceller && (this.canceller(this), this.canceller = null)`): when the
 * cancel's connection fails (server gone, link reset) the rejection is
 * unhandled and crashes the process. So the query's own canceller is called
 * here, its promise handled, and cleared as `cancel()` would; a driver
 * without one gets plain `cancel()`.
 */
function cancelQuietly(q: { cancel(): unknown }): void {
  const inner = q as { canceller?: ((q: unknown) => unknown) | null };
  if (typeof inner.canceller === "function") {
    const canceller = inner.canceller;
    inner.canceller = null;
    Promise.resolve(canceller(q)).catch(() => {});
    return;
  }
  Promise.resolve(q.cancel()).catch(() => {});
}

/** LISTEN through postgres.js, which keeps its own listen connection and reconnects it. */
export function postgresJsListener(sql: PostgresJsLike): Listener | null {
  const listen = sql.listen?.bind(sql);
  if (!listen) return null;
  return {
    async listen(channel, onPayload, onReconnect) {
      let first = true;
      const req = await listen(channel, onPayload, () => {
        if (first) first = false;
        else onReconnect();
      });
      return () => req.unlisten();
    },
  };
}

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/**
 * LISTEN on a dedicated `pg` Client opened from a Pool's settings, reconnected
 * with backoff (100 ms doubling to 5 s) when it drops.
 */
export class PgListener implements Listener {
  private client: PgClientLike | null = null;
  private connecting: Promise<PgClientLike> | null = null;
  private readonly channels = new Map<string, Set<(p: string) => void>>();
  private readonly reconnects = new Set<() => void>();
  private closed = false;
  private retryMs = 100;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: PgPoolLike,
    private readonly logger: Logger,
  ) {}

  private connect(): Promise<PgClientLike> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const c = new this.pool.Client(this.pool.options);
      c.on("error", () => {
        // "end" follows and schedules the reconnect
      });
      c.on("notification", (m) => {
        const set = this.channels.get(m.channel);
        if (set) for (const fn of [...set]) fn(m.payload ?? "");
      });
      try {
        await c.connect();
        for (const ch of this.channels.keys()) await c.query(`LISTEN ${quoteIdent(ch)}`);
      } catch (e) {
        c.removeAllListeners();
        c.on("error", () => {});
        await c.end().catch(() => {});
        throw e;
      }
      c.on("end", () => this.lost(c));
      this.client = c;
      return c;
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private lost(c: PgClientLike): void {
    if (this.client !== c) return;
    this.client = null;
    if (this.closed) return;
    this.logger.warn("postgres LISTEN connection lost; reconnecting", { delayMs: this.retryMs });
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 5000);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect().then(
        () => {
          this.retryMs = 100;
          for (const fn of [...this.reconnects]) fn();
        },
        () => this.schedule(),
      );
    }, delay);
    this.timer.unref();
  }

  async listen(
    channel: string,
    onPayload: (payload: string) => void,
    onReconnect: () => void,
  ): Promise<() => Promise<void>> {
    let set = this.channels.get(channel);
    const fresh = !set;
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
    }
    set.add(onPayload);
    this.reconnects.add(onReconnect);
    try {
      const had = this.client;
      const c = await this.connect();
      // a client connected just now already ran LISTEN for every channel
      if (fresh && had === c) await c.query(`LISTEN ${quoteIdent(channel)}`);
    } catch (e) {
      set.delete(onPayload);
      this.reconnects.delete(onReconnect);
      if (set.size === 0) this.channels.delete(channel);
      throw e;
    }
    return async () => {
      set.delete(onPayload);
      this.reconnects.delete(onReconnect);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const c = this.client ?? (await this.connecting?.catch(() => null)) ?? null;
    this.client = null;
    if (c) await c.end().catch(() => {});
  }
}
