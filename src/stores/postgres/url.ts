/** The store's own parameters in a postgres:// URL. */
import { ConfigError } from "../../errors.js";
import { redactUrl } from "../../store/classify.js";
import { type PostgresTableOptions, tablesFor } from "./tables.js";

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
