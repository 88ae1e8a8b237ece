/**
 * `acquireMany` of the SQLite store: every item of a batch in ONE `BEGIN
 * IMMEDIATE` transaction (one writer lock, one commit, one WAL append), each
 * item judged by the same code as `acquire`, one after the other, at one
 * reading of the host's monotonic clock. A row that is not a lease fails the
 * transaction as a whole (nothing of the batch is written), as it fails
 * `acquire`.
 */
import type { AcquireItem, AcquireResult } from "../../store/types.js";
import { validateAcquireItems } from "../../store/validate.js";

/** What the batch needs from the store. */
export interface SqliteAcquireManyContext {
  /** Runs `fn` in one write transaction (classified StoreError on failure). */
  readonly write: <T>(fn: () => T) => T;
  /** The host's monotonic clock (ms). */
  readonly now: () => bigint;
  /** One acquire inside the transaction, as `acquire` judges it. */
  readonly acquire: (name: string, holder: string, ttlMs: number, now: bigint) => AcquireResult;
}

export async function acquireMany(
  ctx: SqliteAcquireManyContext,
  items: readonly AcquireItem[],
): Promise<AcquireResult[]> {
  validateAcquireItems(items);
  if (items.length === 0) return [];
  return ctx.write(() => {
    const now = ctx.now();
    return items.map(({ name, holder, ttlMs }) => ctx.acquire(name, holder, ttlMs, now));
  });
}
