import type { DemotionReason } from "../errors.js";

import type { Term } from "../term.js";

export type { Term };

/** Payload of the `demoted` event. */
export interface Demotion {
  readonly name: string;
  readonly holder: string;
  readonly token: bigint;
  readonly reason: DemotionReason;
}

/** Who leads a lease, as this process last learned it. */
export interface LeaderInfo {
  readonly name: string;
  readonly holder: string;
  readonly token: bigint;
  /** True when the leader is this process. */
  readonly self: boolean;
}

export type ElectorState = "idle" | "follower" | "leader" | "stopped";

/** Snapshot returned by `elector.health()`. */
export interface ElectorHealth {
  /** False only while something is truly stuck (see `reason`). A healthy follower is healthy. */
  readonly healthy: boolean;
  /**
   * False only while the elector itself is stuck: a leader past its deadline
   * that has not demoted (a blocked event loop), or a loop overdue by more than
   * ttl. Never false because a store is down or leader work is failing: a
   * restart would not help those (this is what `/livez` answers).
   */
  readonly live: boolean;
  readonly state: ElectorState;
  /** Token of the current term, or null when not leading. */
  readonly token: bigint | null;
  /**
   * Time left in the leader's trust window (0 when not leading), in
   * milliseconds to the microsecond, rounded down: it never overstates.
   */
  readonly validForMs: number;
  /** Milliseconds since the store last answered, or null if it never has. */
  readonly lastStoreContactMs: number | null;
  /** Store calls that failed in a row. */
  readonly consecutiveFailures: number;
  /** Why unhealthy; otherwise null. */
  readonly reason: string | null;
  /** The last known leader. */
  readonly leader: LeaderInfo | null;
  /** JSON-safe form (tokens as decimal strings), so `JSON.stringify(health)` works. */
  toJSON(): ElectorHealthJson;
}

/** `ElectorHealth` as JSON: the same fields, tokens as decimal strings. */
export type ElectorHealthJson = Omit<ElectorHealth, "token" | "leader" | "toJSON"> & {
  readonly token: string | null;
  readonly leader: (Omit<LeaderInfo, "token"> & { readonly token: string }) | null;
};

/** Counters for metrics. */
export interface ElectorStats {
  elections: number;
  demotions: Record<DemotionReason, number>;
  renewals: number;
  storeErrors: { transient: number; fatal: number };
}

/** Events of an elector; subscribe with `elector.on(event, fn)` (returns an unsubscribe function). */
export interface ElectorEvents extends Record<string, unknown> {
  /** This process became leader. */
  elected: Term;
  /** This process's term ended. */
  demoted: Demotion;
  /** The known leader changed (null: nobody holds the lease). Emitted for followers and leaders alike. */
  leader: LeaderInfo | null;
  /** A renewal was confirmed; `latencyMs` is its round trip. */
  renewed: { readonly token: bigint; readonly latencyMs: number };
  /** A store call or a listener failed. Never thrown; the elector carries on. */
  error: Error;
}
