/**
 * `renewMany` of the SQLite store: every item of a batch in ONE `BEGIN
 * IMMEDIATE` transaction (one writer lock, one commit, one WAL append), each
 * item judged by the same code as `renew`, one after the other, at one
 * reading of the host's monotonic clock.
 */
import { StoreError } from "../../errors.js";
import type { LeaseRef, RenewItem, RenewResult } from "../../store/types.js";
import { validateRenewItems } from "../../store/validate.js";

/** What the batch needs from the store. */
export interface SqliteRenewManyContext {
  /** Runs `fn` in one write transaction (classified StoreError on failure). */
  readonly write: <T>(fn: () => T) => T;
  /** The host's monotonic clock (ms). */
  readonly now: () => bigint;
  /** One renewal inside the transaction, as `renew` judges it. */
  readonly renew: (lease: LeaseRef, ttlMs: number, now: bigint) => RenewResult;
}

export async function renewMany(
  ctx: SqliteRenewManyContext,
  items: readonly RenewItem[],
): Promise<RenewResult[]> {
  validateRenewItems(items);
  if (items.length === 0) return [];
  return ctx.write(() => {
    const now = ctx.now();
    return items.map(({ lease, ttlMs }) => {
      try {
        return ctx.renew(lease, ttlMs, now);
      } catch (e) {
        // A row that is not a lease (renew would throw a schema error) fails
        // its own item, not the batch: nobody this store can name holds it.
        if (e instanceof StoreError && e.kind === "schema")
          return { renewed: false, current: null };
        throw e;
      }
    });
  });
}
