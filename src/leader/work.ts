import type { DemotionReason } from "../errors.js";
import type { Term } from "../term.js";
import type { LeaderContext, LeaderHooks } from "./hooks.js";
import { type ServiceDefinition, ServiceSet, type ServiceStatus } from "./service.js";
import { type StreamDefinition, StreamSet, type StreamStatus } from "./stream.js";
import {
  type CronOptions,
  type EveryOptions,
  type TickFn,
  TickSet,
  type TickStats,
} from "./tick.js";

/** Counters and states of an elector's leader work, for health and metrics. */
export interface LeaderWorkStats {
  readonly ticks: readonly TickStats[];
  readonly services: readonly ServiceStatus[];
  readonly streams: readonly StreamStatus[];
}

/**
 * The leader work of one elector: services, ticks (interval and cron) and
 * streams. Every piece runs per term: it starts on `elected` and is stopped or
 * silenced the moment the term ends; each tick re-checks leadership against
 * the clock before it runs.
 */
export class LeaderWork implements LeaderHooks {
  private readonly services: ServiceSet;
  private readonly ticks: TickSet;
  private readonly streams: StreamSet;

  constructor(readonly ctx: LeaderContext) {
    this.services = new ServiceSet(ctx);
    this.ticks = new TickSet(ctx);
    this.streams = new StreamSet(ctx);
  }

  onElected(term: Term): void {
    this.ticks.onElected(term);
    this.streams.onElected(term);
    this.services.onElected(term);
  }

  async onTermEnded(term: Term, reason: DemotionReason): Promise<void> {
    this.ticks.onTermEnded(term, reason);
    await Promise.all([
      this.streams.onTermEnded(term, reason),
      this.services.onTermEnded(term, reason),
    ]);
  }

  healthProblem(): string | null {
    return this.services.problem() ?? this.streams.problem();
  }

  async close(): Promise<void> {
    this.ticks.close();
    await Promise.all([this.streams.close(), this.services.close()]);
  }

  /**
   * Runs `fn(term)` every `ms` while this process leads (first run `ms` after
   * election unless `immediate`). Each run re-checks leadership against the
   * clock; a run still going when the next is due makes that one skip. Returns
   * a function that unregisters the tick.
   */
  every(ms: number, fn: TickFn, opts?: EveryOptions): () => void {
    return this.ticks.every(ms, fn, opts);
  }

  /**
   * Runs `fn(term)` on a cron schedule (5 or 6 fields, croner syntax) while
   * this process leads, in `opts.timezone`. Returns an unregister function.
   */
  cron(expr: string, fn: TickFn, opts?: CronOptions): () => void {
    return this.ticks.cron(expr, fn, opts);
  }

  /** Registers a leader-only service (start on election with retries, stop on term end). Returns an unregister function. */
  service<T>(def: ServiceDefinition<T>): () => void {
    return this.services.add(def);
  }

  /** Registers leader-held long-running work with a recovery strategy. Returns an unregister function. */
  stream(def: StreamDefinition): () => void {
    return this.streams.add(def);
  }

  /** Counters and states, for metrics. */
  stats(): LeaderWorkStats {
    return {
      ticks: this.ticks.stats(),
      services: this.services.status(),
      streams: this.streams.status(),
    };
  }
}
