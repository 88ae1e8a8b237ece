/**
 * `acquireMany` of the PostgreSQL store: a batch of acquires in ONE statement
 * ({@link acquireManySql}: one autocommit statement, one commit; no session
 * state, so it works through PgBouncer in transaction mode), each item judged
 * as `acquire` judges it. One statement cannot change one row twice, so a
 * batch naming one lease twice goes as one statement per occurrence
 * (`roundsByName`), in order; a batch of distinct names is one round trip.
 */
import type { AcquireItem, AcquireResult } from "../../store/types.js";
import { roundsByName, validateAcquireItems } from "../../store/validate.js";
import { schemaError } from "../common/errors.js";
import type { Exec } from "./renewals.js";
import { parseInfo, parseToken, pgArray } from "./rows.js";
import { ms, type Tables, tokenFloor, ttl } from "./sql.js";

/**
 * Many acquires in one statement: `acquire` (sql.ts) over `unnest` of
 * $1..$3 (names, holders, ttls in ms; names distinct). Per item, as there:
 * `cur` reads the row from the snapshot, `lk` locks (SKIP LOCKED, never
 * waiting) the rows the snapshot shows free, expired or the item holder's own,
 * `up` starts the new terms with token `max(previous + 1, server clock in µs)`
 * (a row the item's holder holds live keeps its token: its term goes on),
 * `ins` inserts missing rows (in name order, so two batches racing on the
 * same new names cannot deadlock). One row per item, `i` its 1-based
 * position: `won` with the token, else the live holder of the snapshot, else
 * `busy` (the row is being decided by another transaction: retry shortly).
 */
export const acquireManySql = (t: Tables) =>
  `WITH t AS (
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
       WITH ORDINALITY AS t(name, holder, ttl, i)
   ), cur AS (
     SELECT t.i, c.holder, c.token, c.expires_at,
            (c.holder IS NULL OR c.expires_at <= now() OR c.holder = t.holder) AS takeable
     FROM t JOIN ${t.leases} c ON c.name = t.name
   ), lk AS (
     SELECT k.name FROM ${t.leases} k JOIN t ON k.name = t.name
     WHERE k.holder IS NULL OR k.expires_at <= now() OR k.holder = t.holder
     ORDER BY k.name
     FOR NO KEY UPDATE OF k SKIP LOCKED
   ), up AS (
     UPDATE ${t.leases} l
     SET holder = t.holder,
         token = CASE WHEN l.holder = t.holder AND l.expires_at > now() THEN l.token
                      ELSE greatest(l.token + 1, ${tokenFloor}) END,
         expires_at = ${ttl("t.ttl")}
     FROM t, lk
     WHERE l.name = lk.name AND t.name = lk.name
       AND (l.holder IS NULL OR l.expires_at <= now() OR l.holder = t.holder)
     RETURNING l.name, l.token
   ), ins AS (
     INSERT INTO ${t.leases} (name, holder, token, expires_at)
     SELECT t.name, t.holder, ${tokenFloor}, ${ttl("t.ttl")}
     FROM t WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.i = t.i)
     ORDER BY t.name
     ON CONFLICT (name) DO NOTHING
     RETURNING name, token
   ), won AS (SELECT name, token FROM up UNION ALL SELECT name, token FROM ins)
   SELECT t.i::int AS i, t.name, (w.name IS NOT NULL) AS won,
          (w.name IS NULL AND (c.i IS NULL OR c.takeable)) AS busy,
          CASE WHEN w.name IS NULL AND NOT c.takeable THEN c.holder END AS holder,
          CASE WHEN w.name IS NOT NULL THEN w.token::text
               WHEN NOT c.takeable THEN c.token::text END AS token,
          CASE WHEN w.name IS NULL AND NOT c.takeable THEN ${ms("c.expires_at")} END AS ms
   FROM t LEFT JOIN won w ON w.name = t.name LEFT JOIN cur c ON c.i = t.i`;

export async function acquireMany(
  exec: Exec,
  t: Tables,
  items: readonly AcquireItem[],
  busyRetryMs: number,
): Promise<AcquireResult[]> {
  const op = "acquireMany";
  validateAcquireItems(items);
  if (items.length === 0) return [];
  const out: AcquireResult[] = new Array(items.length);
  for (const idx of roundsByName(items)) {
    const round = idx.map((i) => items[i]!);
    const rows = await exec(op, acquireManySql(t), [
      pgArray(round.map((r) => r.name)),
      pgArray(round.map((r) => r.holder)),
      pgArray(round.map((r) => String(r.ttlMs))),
    ]);
    const byPos = new Map<number, (typeof rows)[number]>();
    for (const r of rows) byPos.set(Number(r.i) - 1, r);
    for (const [j, i] of idx.entries()) {
      const { name, holder } = round[j]!;
      const r = byPos.get(j);
      if (!r || r.name !== name) {
        throw schemaError("postgres", op, `no result row for ${JSON.stringify(name)}`);
      }
      if (r.won === true) {
        out[i] = {
          acquired: true,
          lease: { name, holder, token: parseToken(r.token, op, "acquired") },
        };
      } else if (r.busy !== true) out[i] = { acquired: false, current: parseInfo(r, op, name) };
      else out[i] = { acquired: false, current: null, retryInMs: busyRetryMs };
    }
  }
  return out;
}
