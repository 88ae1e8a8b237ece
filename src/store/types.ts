/**
 * The one small interface every backend implements. Every operation is a
 * single atomic round trip where the backend allows it, and every mutation is
 * a compare-and-set on `(name, holder, token)`, so a call from an old term can
 * never touch a newer one.
 */
import type { Clock } from "../clock.js";
import type { Logger } from "../logger.js";

/** Identifies one term of one lease: what renew and release compare against. */
export interface LeaseRef {
  readonly name: string;
  readonly holder: string;
  /** Fencing token of the term: positive, strictly increasing per lease name. */
  readonly token: bigint;
}

/** What a store knows about a live lease, by the store's own clock. */
export interface LeaseInfo {
  readonly name: string;
  readonly holder: string;
  readonly token: bigint;
  /** Milliseconds until the lease expires, measured by the store's clock when it answered. */
  readonly expiresInMs: number;
}

export type AcquireResult =
  | { readonly acquired: true; readonly lease: LeaseRef }
  /**
   * `current` is the live holder, or null when the lease was free but the
   * attempt lost a race or the store refuses grants for now. `retryInMs`: the
   * store grants nothing for this long (a Redis that restarted less than one
   * ttl ago); followers campaign again then.
   */
  | {
      readonly acquired: false;
      readonly current: LeaseInfo | null;
      readonly retryInMs?: number;
    };

export type RenewResult =
  | { readonly renewed: true }
  /** The term is over: someone else holds the lease (`current`), or nobody does (null). */
  | { readonly renewed: false; readonly current: LeaseInfo | null };

/** One lease of a {@link LeaseCore.renewMany} batch: the term and the ttl to extend it to. */
export interface RenewItem {
  readonly lease: LeaseRef;
  readonly ttlMs: number;
}

/** One lease of a {@link LeaseCore.acquireMany} batch: what {@link LeaseCore.acquire} takes. */
export interface AcquireItem {
  readonly name: string;
  readonly holder: string;
  readonly ttlMs: number;
}

/** A change a store noticed on a lease (release notification, takeover…). */
export interface LeaseEvent {
  readonly name: string;
  readonly type: "released" | "acquired" | "changed";
  /**
   * For `acquired` and `changed`: the token of the term the lease has after
   * the change, where the store's notification carries it (etcd, memory).
   * A leader that sees its own term's token ignores the event: it is its own
   * write (its acquire, a renewal moving its key), not a loss. Without it, a
   * leader confirms its term on every change.
   */
  readonly token?: bigint;
}

/** Result of {@link FencedValues.putFenced}. */
export type FencedPutResult =
  | { readonly ok: true }
  /** `fenced`: the token is not the lease's current token. `conflict`: `expect` did not match. */
  | { readonly ok: false; readonly reason: "fenced" | "conflict" };

/** A value stored under a lease by {@link FencedValues.putFenced}. */
export interface FencedValue {
  readonly value: string;
  /** Token of the term that wrote it. */
  readonly token: bigint;
}

/** A record a store could not read as a lease (garbage written by something else). */
export interface InvalidLease {
  /** The lease name the record is stored under. */
  readonly name: string;
  /** What is wrong with it. */
  readonly problem: string;
}

/** Options of {@link LeaseAdmin.list}. */
export interface ListOptions {
  /** Called once for each record that is not a valid lease; it is left out of the result. */
  onInvalid?: (bad: InvalidLease) => void;
}

/** Unsubscribes a watch. */
export type Unwatch = () => Promise<void>;

/**
 * The lease core: what an elector needs to hold a lease. Term-scoped
 * compare-and-set on `(name, holder, token)`, a read, and release
 * notifications where the backend has them.
 */
export interface LeaseCore {
  /** Backend name: `memory`, `sqlite`, `postgres`, `redis`, `etcd`. */
  readonly kind: string;
  /**
   * True when {@link watch} delivers release notifications promptly (so a
   * follower can take over at once). False for polling-only setups, e.g.
   * PostgreSQL behind a transaction pooler.
   */
  readonly notifies: boolean;

  /**
   * Takes the lease for `holder` if it is free or expired: a new term with a
   * larger token than any before. A lease `holder` already holds live is not
   * taken again: the answer is that term (the same token), extended to
   * `ttlMs` from now as a renewal would. So an acquire answered late (its
   * caller gave up, retried and won) never ends the term its retry started;
   * and holder ids must be unique per running process (a second process with
   * the same id would be handed the first one's term).
   */
  acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult>;
  /**
   * Acquires many leases in one round trip (one script, statement,
   * transaction or etcd txn). Answers one {@link AcquireResult} per item, in
   * order; each item is judged exactly as {@link acquire} would judge it at
   * its place in the batch (the same name twice: the second is judged after
   * the first, so one holder twice gets one term: the second answers the
   * first's token). Throws (a StoreError) when the round trip as a whole failed, and
   * then no item is known to be acquired; a batch holding a record the store
   * cannot read as a lease fails as a whole too (callers then acquire item by
   * item, so only that item fails). Optional: without it, callers use
   * {@link acquire} per item.
   */
  acquireMany?(items: readonly AcquireItem[]): Promise<AcquireResult[]>;
  /** Extends the term's lease to `ttlMs` from now if the term still holds it. Keeps the token. */
  renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult>;
  /**
   * Renews many terms in one round trip (one script, statement, transaction
   * or keep-alive). Answers one {@link RenewResult} per item, in order; each
   * item is judged alone, exactly as {@link renew} would judge it. Throws (a
   * StoreError) only when the round trip as a whole failed, and then no item
   * is known to be renewed. Callers keep batches to a size the server digests
   * in one go (the shared renewal path sends at most 1 000 by default).
   * Optional: without it, the shared renewal path calls {@link renew} per item.
   */
  renewMany?(items: readonly RenewItem[]): Promise<RenewResult[]>;
  /** Releases the term's lease if it still holds it; true when released. Notifies watchers. */
  release(lease: LeaseRef): Promise<boolean>;
  /**
   * Releases many terms in one round trip (one script per Cluster slot, one
   * statement, one transaction or one etcd txn per at most 128 leases).
   * Answers one boolean per item, in order; each item is judged exactly as
   * {@link release} would judge it at its place in the batch (the same term
   * twice: the second answers false, the first released it; a stale or
   * foreign term answers false and changes nothing). Watchers of each
   * released lease are notified as by {@link release}. Throws (a StoreError)
   * only when the round trip as a whole failed, and then no item is known to
   * be released. Optional: without it, callers use {@link release} per item.
   */
  releaseMany?(leases: readonly LeaseRef[]): Promise<boolean[]>;
  /** The live lease, or null when nobody holds it (never held, released or expired). */
  read(name: string): Promise<LeaseInfo | null>;
  /** Calls `onChange` when the lease changes hands or is released. Optional. */
  watch?(name: string, onChange: (event: LeaseEvent) => void): Promise<Unwatch>;
}

/**
 * Fenced values: what leader work writes under its lease. A write goes
 * through only while the writing term is the lease's current term.
 */
export interface FencedValues {
  /**
   * Writes `value` under `key` of lease `name` only if `token` is the lease's
   * current token (and, with `expect`, only if the stored value equals it; null
   * means "absent"). One atomic operation: a stale term can never move it.
   * Pass the term itself: stores whose tokens can repeat across a failover
   * (PostgreSQL with a promoted async standby) also check `holder` and that
   * the term is still in force.
   */
  putFenced(
    lease: Pick<LeaseRef, "name" | "holder" | "token">,
    key: string,
    value: string,
    opts?: { expect?: string | null },
  ): Promise<FencedPutResult>;
  /** Reads a value written by {@link putFenced}. */
  getFenced(name: string, key: string): Promise<FencedValue | null>;
}

/** Administration: what an operator's tools (the CLI) need beyond the core. */
export interface LeaseAdmin {
  /**
   * Every live lease this store holds. A record that is not a valid lease does
   * not fail the call: it is left out and reported to `opts.onInvalid` (its
   * name and what is wrong with it).
   */
  list(opts?: ListOptions): Promise<LeaseInfo[]>;
  /** Break-glass release of whoever holds `name`. True when something was released. */
  forceRelease(name: string): Promise<boolean>;
}

/**
 * The one interface every backend implements: the three roles above and
 * `close`. Code that needs only one role takes that role's type, so leader
 * work, for example, is never handed `forceRelease`.
 */
export interface LeaseStore extends LeaseCore, FencedValues, LeaseAdmin {
  /** Closes connections the store opened itself. Idempotent. */
  close(): Promise<void>;
}

/**
 * What an elector takes: the lease core, and the fenced values it hands to
 * leader work (checkpoints, tick claims, `tenure run --once`).
 */
export type ElectorStore = LeaseCore & FencedValues;

/** What leader work gets ({@link LeaderContext}.store): fenced values, and a read to name the current token. */
export type LeaderStore = FencedValues & Pick<LeaseCore, "read">;

/** Options every backend understands when opened by URL. */
export interface OpenStoreOptions {
  /** Clock for the memory store's expiry. Other stores use their server's clock. */
  clock?: Clock;
  /** Where the store logs reconnects and notifications. Default: silent. */
  logger?: Logger;
}
