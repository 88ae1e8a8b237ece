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
import { checkPgToken, parseInfo, pgQuote } from "./rows.js";
import * as SQL from "./sql.js";

/** One input row of the statement: a distinct term, with the longest ttl of its items. */
interface Row {
  readonly name: string;
  readonly holder: string;
  readonly token: bigint;
  ttlMs: number;
}

const RENEWED: RenewResult = Object.freeze({ renewed: true });

export async function renewMany(
  exec: Exec,
  t: SQL.Tables,
  items: readonly RenewItem[],
  op = "renewMany",
): Promise<RenewResult[]> {
  validateRenewItems(items);
  for (let i = 0; i < items.length; i++)
    checkPgToken(items[i]!.lease.token, `items[${i}].lease.token`);
  if (items.length === 0) return [];
  // One input row per distinct term (name, holder, token): the same term twice
  // would make UPDATE … FROM ambiguous. Its items share the row and its answer;
  // the row carries their longest ttl, so every caller's trust window
  // (sentAt + its ttl − margin) ends before the lease does. Rows are found by
  // name first (names rarely repeat in a batch), by the whole term when they do.
  const byName = new Map<string, number>();
  let byTerm: Map<string, number> | null = null;
  const rows: Row[] = [];
  const of = new Array<number>(items.length);
  for (let i = 0; i < items.length; i++) {
    const { lease, ttlMs } = items[i]!;
    let r = byName.get(lease.name);
    if (r === undefined) {
      r = rows.length;
      byName.set(lease.name, r);
      rows.push({ name: lease.name, holder: lease.holder, token: lease.token, ttlMs });
    } else {
      const first = rows[r]!;
      if (first.holder !== lease.holder || first.token !== lease.token) {
        const key = `${lease.name}\n${lease.holder}\n${lease.token}`;
        byTerm ??= new Map();
        const other = byTerm.get(key);
        if (other === undefined) {
          r = rows.length;
          byTerm.set(key, r);
          rows.push({ name: lease.name, holder: lease.holder, token: lease.token, ttlMs });
        } else r = other;
      }
      if (ttlMs > rows[r]!.ttlMs) rows[r]!.ttlMs = ttlMs;
    }
    of[i] = r;
  }
  const answer = await exec(op, SQL.renewMany(t), [
    pgArrayOf(rows, (r) => r.name),
    pgArrayOf(rows, (r) => r.holder),
    pgArrayOf(rows, (r) => r.token.toString()),
    pgArrayOf(rows, (r) => String(r.ttlMs)),
  ]);
  const byRow = new Array<(typeof answer)[number] | undefined>(rows.length);
  for (const r of answer) {
    const i = Number(r.i) - 1;
    if (i >= 0 && i < rows.length) byRow[i] = r;
  }
  const out = new Array<RenewResult>(items.length);
  for (let i = 0; i < items.length; i++) {
    const { lease } = items[i]!;
    const r = byRow[of[i]!];
    if (!r || r.name !== lease.name) {
      throw schemaError("postgres", op, `no result row for ${JSON.stringify(lease.name)}`);
    }
    out[i] =
      r.won === true
        ? RENEWED
        : { renewed: false, current: r.holder == null ? null : parseInfo(r, op, lease.name) };
  }
  return out;
}

/** {@link pgArray} of one field of each row, without an intermediate array. */
function pgArrayOf(rows: readonly Row[], field: (r: Row) => string): string {
  let s = "{";
  for (let i = 0; i < rows.length; i++) {
    if (i > 0) s += ",";
    s += pgQuote(field(rows[i]!));
  }
  return `${s}}`;
}
