import type { Clock } from "../clock.js";
import { isConfigError, StoreError } from "../errors.js";
import type { AcquireItem, AcquireResult, LeaseCore } from "../store/types.js";
import { BatchQueue, type BatchStats } from "./batch-queue.js";
import { sharedFor } from "./registry.js";

/** What the acquirer needs of a store: `acquire`, and `acquireMany` where it has one. */
export type AcquireStore = Pick<LeaseCore, "acquire" | "acquireMany">;

/** What one acquire request came to, and when the batch carrying it was sent. */
export interface AcquireAnswer {
  readonly result: AcquireResult;
  /** Monotonic time the request's batch was sent: a won term's trust window starts there. */
  readonly sentAt: number;
}

/** Counters of an acquirer, for benches and metrics: `batches` are `acquireMany` round trips. */
export type AcquirerStats = BatchStats;

/**
 * The shared acquire path of one store and one clock (DESIGN §7): campaigns
 * of every elector (and so every group partition) in one process go through
 * it. Requests issued in the same turn of the event loop (before the
 * acquirer's queued microtask runs) leave together, in batches of at most
 * `batchSize`, each as one `acquireMany` round trip (or `acquire` per lease
 * where the store has none). At most {@link MAX_IN_FLIGHT} batches are out
 * at once: requests that come while they are wait for one to come back and
 * then leave together, so electors that reach their campaign one by one (each
 * after its own watch was set up) still go out in few large batches. A batch
 * stops counting as out once its shortest ttl has passed (its callers have
 * given up on it by then), so a store that never answers cannot hold the
 * others back. Each request gets its own result and its
 * batch's send time. A batch that fails as a whole fails each of its
 * requests, except a batch refused for a record the store cannot read as a
 * lease (a `schema` error, or PostgreSQL's token at the bigint maximum) or
 * for a bad item (a ConfigError):
 * then each item is acquired alone, so only the bad one fails. The acquirer
 * holds no timer while idle; the answer timeouts of a batch's callers share
 * one timer. The skeleton is {@link BatchQueue}'s. Obtain the shared one with
 * `acquirerFor(store, { clock })`.
 */
export class Acquirer extends BatchQueue<AcquireItem, AcquireResult, AcquireAnswer> {
  constructor(
    readonly store: AcquireStore,
    clock: Clock,
    opts: { batchSize?: number } = {},
  ) {
    super(clock, "tenure acquirer", "acquire", MAX_IN_FLIGHT, opts);
  }

  /**
   * Acquires `name` for `holder`, batched with the other requests of this
   * turn. `deadline` (monotonic ms): when the caller stops waiting; a request
   * still queued then is not sent (it rejects with a transient `timeout`
   * StoreError), so callers that gave up do not crowd out the others.
   * `timeoutMs`: once sent, how long the caller waits for the answer, counted
   * from the batch's send (one timer per batch): an answer not back by then
   * rejects with a transient `timeout` StoreError.
   */
  acquire(
    name: string,
    holder: string,
    ttlMs: number,
    deadline = Number.POSITIVE_INFINITY,
    timeoutMs = Number.POSITIVE_INFINITY,
  ): Promise<AcquireAnswer> {
    return this.enqueue({ name, holder, ttlMs }, deadline, timeoutMs);
  }

  protected hasMany(): boolean {
    return this.store.acquireMany !== undefined;
  }

  protected many(items: AcquireItem[]): Promise<readonly AcquireResult[]> {
    return this.store.acquireMany!(items);
  }

  protected one(item: AcquireItem): Promise<AcquireResult> {
    return this.store.acquire(item.name, item.holder, item.ttlMs);
  }

  protected fromMany(result: AcquireResult, sentAt: number): AcquireAnswer {
    return { result, sentAt };
  }

  /** A batch stops counting as out once its shortest ttl has passed: its callers gave up by then. */
  protected holdUntil(batch: readonly { readonly item: AcquireItem }[], sentAt: number): number {
    let holdMs = Number.POSITIVE_INFINITY;
    for (const p of batch) if (p.item.ttlMs < holdMs) holdMs = p.item.ttlMs;
    return sentAt + holdMs;
  }

  protected itemByItem(e: unknown): boolean {
    return unreadableRecord(e);
  }
}

/** Most acquire batches out at once per store and clock. */
export const MAX_IN_FLIGHT = 4;

/** A batch refused as a whole because of one record: each item is then tried alone. */
function unreadableRecord(e: unknown): boolean {
  return (
    isConfigError(e) || (e instanceof StoreError && (e.kind === "schema" || e.code === "22003"))
  );
}

const acquirers = new WeakMap<AcquireStore, WeakMap<Clock, Acquirer>>();

/**
 * The shared acquirer of `store` and `clock` (default: the system clock),
 * created on first use. `batchSize`, when given, applies to it from now on.
 */
export function acquirerFor(
  store: AcquireStore,
  opts: { batchSize?: number; clock?: Clock } = {},
): Acquirer {
  return sharedFor(acquirers, Acquirer, store, opts);
}
