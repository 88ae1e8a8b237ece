/**
 * `renewMany` of the PostgreSQL store: every item of a batch in ONE statement
 * ({@link SQL.renewMany}: one autocommit statement, one commit, one WAL
 * flush; no session state, so it works through PgBouncer in transaction
 * mode). The coalescer of single `renew` calls (renewals.ts) sends its
 * batches through here too.
 */
import type { RenewItem, RenewResult } from "../../store/types.js";
import { validateRenewItems } from "../../store/validate.js";
import { schemaError } from "../common/errors.js";
import type { Exec } from "./renewals.js";
import { checkPgToken, parseInfo, pgArray } from "./rows.js";
import * as SQL from "./sql.js";

export async function renewMany(
  exec: Exec,
  t: SQL.Tables,
  items: readonly RenewItem[],
  op = "renewMany",
): Promise<RenewResult[]> {
  validateRenewItems(items);
  for (const [i, it] of items.entries()) checkPgToken(it.lease.token, `items[${i}].lease.token`);
  if (items.length === 0) return [];
  // One input row per distinct term (name, holder, token): the same term twice
  // would make UPDATE … FROM ambiguous. Its items share the row and its answer;
  // the row carries their longest ttl, so every caller's trust window
  // (sentAt + its ttl − margin) ends before the lease does.
  const rowOf = new Map<string, number>();
  const rows: { name: string; holder: string; token: string; ttlMs: number }[] = [];
  const of = items.map(({ lease, ttlMs }) => {
    const token = lease.token.toString();
    const key = `${lease.name}\n${lease.holder}\n${token}`;
    let r = rowOf.get(key);
    if (r === undefined) {
      r = rows.length;
      rowOf.set(key, r);
      rows.push({ name: lease.name, holder: lease.holder, token, ttlMs });
    } else if (ttlMs > rows[r]!.ttlMs) rows[r]!.ttlMs = ttlMs;
    return r;
  });
  const answer = await exec(op, SQL.renewMany(t), [
    pgArray(rows.map((r) => r.name)),
    pgArray(rows.map((r) => r.holder)),
    pgArray(rows.map((r) => r.token)),
    pgArray(rows.map((r) => String(r.ttlMs))),
  ]);
  const byRow = new Map<number, (typeof answer)[number]>();
  for (const r of answer) byRow.set(Number(r.i) - 1, r);
  return items.map(({ lease }, i) => {
    const r = byRow.get(of[i]!);
    if (!r || r.name !== lease.name) {
      throw schemaError("postgres", op, `no result row for ${JSON.stringify(lease.name)}`);
    }
    if (r.won === true) return { renewed: true };
    return { renewed: false, current: r.holder == null ? null : parseInfo(r, op, lease.name) };
  });
}
