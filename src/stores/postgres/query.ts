/** One statement with a hard client-side bound, every failure classified. */
import { raceDeadline, TIMED_OUT } from "../../async.js";
import { systemClock } from "../../clock.js";
import { StoreError } from "../../errors.js";
import { toStoreError } from "../../store/classify.js";
import type { PgRow, Queryable } from "./adapters.js";
import { classifyPostgres } from "./classify.js";

/**
 * Runs one statement. The driver gets `timeoutMs` (it cancels or drops the
 * connection then); the bound here is a little later, for a driver that never
 * answers at all: a transient `timeout` StoreError.
 */
export async function run(
  q: Queryable,
  op: string,
  text: string,
  params: readonly string[],
  timeoutMs: number,
): Promise<PgRow[]> {
  const p = q.query(text, params, timeoutMs);
  let rows: PgRow[] | typeof TIMED_OUT;
  try {
    rows = await raceDeadline(systemClock, p, timeoutMs + 250);
  } catch (e) {
    throw toStoreError("postgres", op, e, classifyPostgres);
  }
  if (rows !== TIMED_OUT) return rows;
  p.catch(() => {});
  throw new StoreError(`tenure postgres: ${op} failed: no answer within ${timeoutMs} ms`, {
    transient: true,
    kind: "timeout",
    code: "ETIMEDOUT",
  });
}
