/**
 * `renewMany` of the PostgreSQL store: every item of a batch in ONE statement
 * ({@link SQL.renewMany}: one autocommit statement, one commit, one WAL
 * flush; no session state, so it works through PgBouncer in transaction
 * mode). The store's coalescer of single `renew` calls sends its batches
 * through here too.
 */
import type { LeaseInfo, RenewItem, RenewResult } from "../../store/types.js";
import { validateRenewItems } from "../../store/validate.js";
import type { PgRow } from "./adapters.js";

/** What the batch needs from the store. */
export interface PgRenewManyContext {
  /** Runs the statement (classified StoreError on failure). */
  readonly exec: (text: string, params: readonly string[]) => Promise<PgRow[]>;
  /** The renewMany statement on the store's table. */
  readonly text: string;
  /** Refuses a token PostgreSQL cannot hold (ConfigError), as renew does. */
  readonly checkToken: (token: bigint, field: string) => void;
  /** A text[] literal. */
  readonly array: (items: readonly string[]) => string;
  readonly parseInfo: (r: PgRow, name: string) => LeaseInfo;
  readonly schemaError: (what: string) => Error;
}

export async function renewMany(
  ctx: PgRenewManyContext,
  items: readonly RenewItem[],
): Promise<RenewResult[]> {
  validateRenewItems(items);
  for (const [i, it] of items.entries()) ctx.checkToken(it.lease.token, `items[${i}].lease.token`);
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
  const answer = await ctx.exec(ctx.text, [
    ctx.array(rows.map((r) => r.name)),
    ctx.array(rows.map((r) => r.holder)),
    ctx.array(rows.map((r) => r.token)),
    ctx.array(rows.map((r) => String(r.ttlMs))),
  ]);
  const byRow = new Map<number, PgRow>();
  for (const r of answer) byRow.set(Number(r.i) - 1, r);
  return items.map(({ lease }, i) => {
    const r = byRow.get(of[i]!);
    if (!r || r.name !== lease.name) {
      throw ctx.schemaError(`renewMany: no result row for ${JSON.stringify(lease.name)}`);
    }
    if (r.won === true) return { renewed: true };
    return { renewed: false, current: r.holder == null ? null : ctx.parseInfo(r, lease.name) };
  });
}
