import type { Clock } from "../clock.js";
import { isConfigError, StoreError } from "../errors.js";
import type { LeaseCore, LeaseRef } from "../store/types.js";
import { BatchQueue, type BatchStats } from "./batch-queue.js";
import { sharedFor } from "./registry.js";

/** What the releaser needs of a store: `release`, and `releaseMany` where it has one. */
export type ReleaseStore = Pick<LeaseCore, "release" | "releaseMany">;

/** Counters of a releaser, for benches and metrics: `batches` are `releaseMany` round trips or lone `release`s. */
export type ReleaserStats = BatchStats;

/**
 * The shared release path of one store and one clock (DESIGN §7), the
 * counterpart of the acquirer: every elector (and so every group partition)
 * in one process releases through it. Releases issued in the same turn of the
 * event loop leave together, in batches of at most `batchSize`, each as one
 * `releaseMany` round trip (a lone release as `release`; `release` per lease
 * where the store has no `releaseMany`). At most {@link MAX_RELEASES_IN_FLIGHT}
 * batches are out at once; releases that come meanwhile wait for one to come
 * back and then leave together, so partitions whose work stops one by one
 * still go out in few round trips. A batch stops counting as out once the
 * earliest deadline of its callers has passed, so a store that never answers
 * cannot hold the others back. The releaser only batches: each caller asks
 * for its lease when that lease's work has stopped, so work still stops
 * before its own lease is released. A batch that fails as a whole fails each
 * of its requests, except one refused for a bad item (a ConfigError) or a
 * record the store cannot read (a `schema` error): then each item is released
 * alone, so only the bad one fails. The skeleton is {@link BatchQueue}'s.
 * Obtain the shared one with `releaserFor(store, { clock })`.
 */
export class Releaser extends BatchQueue<LeaseRef, boolean, boolean> {
  constructor(
    readonly store: ReleaseStore,
    clock: Clock,
    opts: { batchSize?: number } = {},
  ) {
    super(clock, "tenure releaser", "release", MAX_RELEASES_IN_FLIGHT, opts);
  }

  /**
   * Releases `lease` (true when released, as `store.release` answers), batched
   * with the other releases of this turn. `deadline` (monotonic ms): when the
   * caller stops waiting; a request still queued then is not sent (it rejects
   * with a transient `timeout` StoreError).
   */
  release(lease: LeaseRef, deadline = Number.POSITIVE_INFINITY): Promise<boolean> {
    return this.enqueue(lease, deadline, Number.POSITIVE_INFINITY);
  }

  /** A lone release goes as `release`. */
  protected hasMany(n: number): boolean {
    return n > 1 && this.store.releaseMany !== undefined;
  }

  protected many(leases: LeaseRef[]): Promise<readonly boolean[]> {
    return this.store.releaseMany!(leases);
  }

  protected one(lease: LeaseRef): Promise<boolean> {
    return this.store.release(lease);
  }

  protected fromMany(released: boolean): boolean {
    return released === true;
  }

  protected override fromOne(released: boolean): boolean {
    return released;
  }

  /** A batch stops counting as out once the earliest deadline of its callers has passed. */
  protected holdUntil(batch: readonly { readonly deadline: number }[]): number {
    let holdUntil = Number.POSITIVE_INFINITY;
    for (const p of batch) if (p.deadline < holdUntil) holdUntil = p.deadline;
    return holdUntil;
  }

  protected itemByItem(e: unknown): boolean {
    return badItem(e);
  }
}

/** Most release batches out at once per store and clock. */
export const MAX_RELEASES_IN_FLIGHT = 4;

/** A batch refused as a whole because of one item: each item is then released alone. */
function badItem(e: unknown): boolean {
  return isConfigError(e) || (e instanceof StoreError && e.kind === "schema");
}

const releasers = new WeakMap<ReleaseStore, WeakMap<Clock, Releaser>>();

/**
 * The shared releaser of `store` and `clock` (default: the system clock),
 * created on first use. `batchSize`, when given, applies to it from now on.
 */
export function releaserFor(
  store: ReleaseStore,
  opts: { batchSize?: number; clock?: Clock } = {},
): Releaser {
  return sharedFor(releasers, Releaser, store, opts);
}
