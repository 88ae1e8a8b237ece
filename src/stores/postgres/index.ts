/**
 * PostgreSQL lease store (`postgres://…`, `postgresql://…`): a lease table,
 * one statement per operation with the database's clock, safe behind
 * PgBouncer in transaction mode; LISTEN/NOTIFY for fast handoff when the
 * connection is direct; `fence(tx, term)` for the caller's own transactions.
 * Works with a `pg` Pool/Client or a postgres.js `sql` instance.
 */
import { ConfigError, StoreError } from "../../errors.js";
import { noopLogger } from "../../logger.js";
import { redactSecrets } from "../../store/classify.js";
import type { OpenStoreOptions } from "../../store/types.js";
import { PgListener } from "./adapters.js";
import { PG_DEFAULT_APPLICATION_NAME, PostgresStore, type PostgresStoreOptions } from "./store.js";
import { timeoutFor } from "./tables.js";
import { parsePostgresUrl } from "./url.js";

export type { Listener, PgQueryTarget, PgRow, PostgresJsLike, Queryable } from "./adapters.js";
export { isPostgresJs, PgListener, pgQueryable, postgresJsQueryable } from "./adapters.js";
export { classifyPostgres } from "./classify.js";
export { fence } from "./fence.js";
export { pgArray } from "./rows.js";
export {
  PG_BUSY_RETRY_MS,
  PG_DEFAULT_APPLICATION_NAME,
  PostgresStore,
  type PostgresStoreOptions,
} from "./store.js";
export {
  PG_DEFAULT_QUERY_TIMEOUT_MS,
  PG_DEFAULT_TABLE,
  type PostgresTableOptions,
  postgresSchemaSql,
} from "./tables.js";
export { PG_URL_PARAMS, parsePostgresUrl } from "./url.js";

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
