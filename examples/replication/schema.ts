/** Names, DDL and the sink statements of the replication example. */
import type pg from "pg";

const IDENT = /^[a-z_][a-z0-9_]{0,50}$/;

/** Checks an identifier the example puts into SQL (lower-case letters, digits, `_`). */
export function ident(field: string, v: string): string {
  if (!IDENT.test(v)) {
    throw new Error(
      `replication: ${field} must match ${IDENT} (lower-case letters, digits, _), got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** The tables of one replication: a source table and, in the sink database, the copy, its checkpoint and an applied-LSN log. */
export interface Tables {
  /** Source table (id bigserial, val text, version bigint). */
  readonly source: string;
  /** Sink table: the copy, plus `applied` (how many changes were applied to the row). */
  readonly sink: string;
  /** `<sink>_checkpoint`: one row per slot, the end LSN of the last source transaction applied. */
  readonly checkpoint: string;
  /** `<sink>_applied`: one row per applied source transaction (LSN, xid, fencing token). */
  readonly applied: string;
}

export function tables(source: string, sink: string): Tables {
  ident("source table", source);
  ident("sink table", sink);
  return {
    source: `"${source}"`,
    sink: `"${sink}"`,
    checkpoint: `"${sink}_checkpoint"`,
    applied: `"${sink}_applied"`,
  };
}

export const sourceDdl = (t: Tables) => [
  `CREATE TABLE IF NOT EXISTS ${t.source} (
     id bigserial PRIMARY KEY,
     val text NOT NULL,
     version bigint NOT NULL DEFAULT 1
   )`,
];

export const sinkDdl = (t: Tables) => [
  `CREATE TABLE IF NOT EXISTS ${t.sink} (
     id bigint PRIMARY KEY,
     val text NOT NULL,
     version bigint NOT NULL,
     applied integer NOT NULL
   )`,
  `CREATE TABLE IF NOT EXISTS ${t.checkpoint} (
     slot text PRIMARY KEY,
     lsn pg_lsn NOT NULL,
     token bigint NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
   )`,
  `CREATE TABLE IF NOT EXISTS ${t.applied} (
     seq bigserial PRIMARY KEY,
     lsn pg_lsn NOT NULL,
     xid bigint NOT NULL,
     token bigint NOT NULL,
     changes integer NOT NULL,
     at timestamptz NOT NULL DEFAULT clock_timestamp()
   )`,
];

/** Runs `CREATE … IF NOT EXISTS` statements; a concurrent creator winning the race is fine. */
export async function createTables(c: pg.ClientBase, stmts: string[]): Promise<void> {
  for (const s of stmts) {
    try {
      await c.query(s);
    } catch (e) {
      const code = (e as { code?: string }).code;
      // 23505 unique_violation / 42P07 duplicate_table / 42710 duplicate_object (catalog races).
      if (code !== "23505" && code !== "42P07" && code !== "42710") throw e;
    }
  }
}

/**
 * The net upserts of a batch; `applied` counts the changes applied to the row,
 * so a change applied twice (or lost) shows as applied ≠ the source's version.
 */
export const upsertRows = (t: Tables) =>
  `INSERT INTO ${t.sink} AS s (id, val, version, applied)
   SELECT id, val, version, n FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[]) AS u(id, val, version, n)
   ON CONFLICT (id) DO UPDATE SET val = excluded.val, version = excluded.version, applied = s.applied + excluded.applied`;

export const deleteRows = (t: Tables) => `DELETE FROM ${t.sink} WHERE id = ANY($1::bigint[])`;

export const readCheckpoint = (t: Tables) =>
  `SELECT lsn::text AS lsn FROM ${t.checkpoint} WHERE slot = $1::text`;

export const lockCheckpoint = (t: Tables) =>
  `SELECT lsn::text AS lsn FROM ${t.checkpoint} WHERE slot = $1::text FOR UPDATE`;

export const writeCheckpoint = (t: Tables) =>
  `INSERT INTO ${t.checkpoint} AS c (slot, lsn, token) VALUES ($1::text, $2::pg_lsn, $3::bigint)
   ON CONFLICT (slot) DO UPDATE SET lsn = excluded.lsn, token = excluded.token, updated_at = clock_timestamp()`;

export const logApplied = (t: Tables) =>
  `INSERT INTO ${t.applied} (lsn, xid, token, changes)
   SELECT l::pg_lsn, x, $3::bigint, n
   FROM unnest($1::text[], $2::bigint[], $4::int[]) AS u(l, x, n)`;
