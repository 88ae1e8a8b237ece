/** `fence(tx, term)`: the lease check a caller puts in its own PostgreSQL transaction. */
import { ConfigError, FencedError } from "../../errors.js";
import type { LeaseRef } from "../../store/types.js";
import {
  isPostgresJs,
  type PgQueryTarget,
  pgQueryable,
  postgresJsQueryable,
  type Queryable,
} from "./adapters.js";
import { run } from "./query.js";
import { parseToken } from "./rows.js";
import * as SQL from "./sql.js";
import { type PostgresTableOptions, tablesFor, timeoutFor } from "./tables.js";

function queryableFor(x: unknown): Queryable {
  if (isPostgresJs(x)) return postgresJsQueryable(x);
  if (x && typeof (x as PgQueryTarget).query === "function") return pgQueryable(x as PgQueryTarget);
  throw new ConfigError(
    "tx",
    "must be a pg client inside BEGIN…COMMIT or a postgres.js transaction (sql.begin(tx => …))",
  );
}

/** The term a fenced call names: holder and token both must match the row in force. */
export type TermRef = Pick<LeaseRef, "name" | "holder" | "token">;

export function termParams(term: TermRef, field: string): [string, string, string] {
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
  throw new FencedError(
    term.name,
    term.token,
    tok === undefined ? null : parseToken(tok, "fence", "fence"),
  );
}
