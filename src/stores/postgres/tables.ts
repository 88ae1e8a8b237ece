/** Where the lease tables are (schema, table, NOTIFY channel) and how long one query may take. */
import { ConfigError } from "../../errors.js";
import { checkInt } from "../../limits.js";
import * as SQL from "./sql.js";

/** Default lease table; fenced values live in `<table>_fenced`. */
export const PG_DEFAULT_TABLE = "tenure_leases";
/** Default per-query timeout in ms: a black-holed connection fails within this (transient). */
export const PG_DEFAULT_QUERY_TIMEOUT_MS = 5000;

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

/** The quoted table names and the NOTIFY channel of `opts`; a bad identifier is a ConfigError. */
export function tablesFor(opts: PostgresTableOptions): SQL.Tables & { channel: string } {
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

/** The per-query timeout of `opts`, checked. */
export function timeoutFor(opts: PostgresTableOptions): number {
  return checkInt("queryTimeoutMs", opts.queryTimeoutMs ?? PG_DEFAULT_QUERY_TIMEOUT_MS, 1, 600_000);
}

/** The DDL of the lease tables, for users whose migrations own the schema. */
export function postgresSchemaSql(opts: PostgresTableOptions = {}): string[] {
  return SQL.ddl(tablesFor(opts));
}
