import type { Clock } from "../clock.js";
import type { DemotionReason } from "../errors.js";
import type { Logger } from "../logger.js";
import type { LeaderStore } from "../store/types.js";
import type { Term } from "../term.js";

/**
 * What the elector offers to leader work (services, ticks, streams). Leader
 * work never sees the store's internals, only this.
 */
export interface LeaderContext {
  readonly name: string;
  readonly holderId: string;
  readonly store: LeaderStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly random: () => number;
  /** Clock-checked leadership (demotes on the spot when the trust window has passed). */
  isLeader(): boolean;
  /**
   * Demotes now (reason `expired`) if the trust window has passed; returns
   * whether this process still leads. Use it where the point is the demotion.
   */
  enforceDeadline(): boolean;
  /** The current term if leader (clock-checked), else null. */
  term(): Term | null;
  /** Resigns `term` only if it is still the current term. Resolves false otherwise. */
  resignTerm(term: Term): Promise<boolean>;
  /**
   * Confirms with the store that `term` still holds the lease; if the store
   * shows another holder or none, the term ends at once (`lost`). `held`,
   * `ended` (now or before) or `unknown` (the store did not answer).
   */
  confirmTerm(term: Term): Promise<"held" | "ended" | "unknown">;
  /** Reports an error through the elector's `error` event. */
  reportError(err: Error): void;
}

/** Leader work attached to an elector. */
export interface LeaderHooks {
  /** Called synchronously right after a term starts. Must not throw. */
  onElected(term: Term): void;
  /**
   * Called when a term ends, before the lease is released on resign/stop.
   * Resolves when everything the term started has stopped (bounded by the elector).
   */
  onTermEnded(term: Term, reason: DemotionReason): Promise<void>;
  /** Null when healthy, else why leader work is unhealthy (e.g. a service is down). */
  healthProblem(): string | null;
  /** Stops for good (elector stopping). */
  close(): Promise<void>;
}
