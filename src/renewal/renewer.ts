import type { Clock } from "../clock.js";
import { checkInt } from "../limits.js";
import type { LeaseCore, LeaseRef } from "../store/types.js";
import { Batch } from "./batch.js";
import { EXPIRED, type RenewOutcome } from "./outcome.js";
import { Renewal, type RenewalHost } from "./renewal.js";
import { Slots } from "./slots.js";

/** What the renewer needs of a store: `renew`, and `renewMany` where it has one. */
export type RenewStore = Pick<LeaseCore, "renew" | "renewMany">;

/** Options of a {@link Renewer}. */
export interface RenewerOptions {
  /** Most leases sent in one round trip. Default 1 000; at least 1. */
  batchSize?: number;
}

/** Default values, as documented on {@link RenewerOptions}. */
export const RENEWER_DEFAULTS = Object.freeze({ batchSize: 1000 });

/** Counters of a renewer, for benches and metrics. */
export interface RenewerStats {
  /** Times the renewer woke and sent what was due. */
  wakes: number;
  /** Batches sent (store round trips with `renewMany`). */
  batches: number;
  /** Renewal requests sent. */
  sent: number;
  /** Requests whose deadline came before they could be sent. */
  expired: number;
}

/**
 * The shared renewal path of one store and one clock (DESIGN §7): every term
 * a process holds in that store renews through it. Due requests wait in time
 * slots; ONE timer of the clock wakes the renewer for the earliest slot, and
 * everything due then goes out in batches of at most `batchSize`, each sent
 * as one `renewMany` round trip (or `renew` per lease where the store has no
 * `renewMany`). Each client gets its own outcome and its batch's send time,
 * where its new trust window starts. A renewer with nothing to renew holds no
 * timer. Obtain the shared one with `renewerFor(store, { clock })`.
 */
export class Renewer implements RenewalHost {
  private size: number;
  private readonly slots = new Slots<Renewal>();
  private timer: AbortController | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private readonly counters: RenewerStats = { wakes: 0, batches: 0, sent: 0, expired: 0 };

  constructor(
    readonly store: RenewStore,
    readonly clock: Clock,
    opts: RenewerOptions = {},
  ) {
    this.size = RENEWER_DEFAULTS.batchSize;
    this.configure(opts);
  }

  /** Most leases per round trip. */
  get batchSize(): number {
    return this.size;
  }

  /** Changes options; batches sent from now on follow them. Throws ConfigError on a bad value. */
  configure(opts: RenewerOptions): void {
    if (opts.batchSize !== undefined)
      this.size = checkInt("batchSize", opts.batchSize, 1, 1_000_000);
  }

  /** Requests waiting for their time (not in flight). */
  get waiting(): number {
    return this.slots.size;
  }

  /** True while the renewer holds its timer. */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** Counters since creation. */
  stats(): Readonly<RenewerStats> {
    return this.counters;
  }

  /**
   * Joins one term: `lease` is renewed to `ttlMs` whenever the returned
   * client asks. It leaves when `signal` aborts (the term ended) or on
   * `leave()`.
   */
  join(lease: LeaseRef, ttlMs: number, signal?: AbortSignal): Renewal {
    return new Renewal(this, lease, ttlMs, signal);
  }

  /** @internal */
  now(): number {
    return this.clock.now();
  }

  /** Outcomes waiting for their client ({@link Renewal.ask}); one microtask hands them all over. */
  private outbox: Renewal[] = [];
  private outcomes: RenewOutcome[] = [];

  /** @internal */
  deliver(r: Renewal, o: RenewOutcome): void {
    this.outbox.push(r);
    this.outcomes.push(o);
    if (this.outbox.length === 1) queueMicrotask(() => this.drain());
  }

  private drain(): void {
    const rs = this.outbox;
    const os = this.outcomes;
    this.outbox = [];
    this.outcomes = [];
    let failed: { e: unknown } | null = null;
    for (let i = 0; i < rs.length; i++) {
      try {
        rs[i]!.deliverTo(os[i]!);
      } catch (e) {
        failed ??= { e };
      }
    }
    // A client that throws must not keep the others from their outcomes; its error still surfaces.
    if (failed) throw failed.e;
  }

  /** @internal */
  schedule(r: Renewal): void {
    this.slots.add(r);
    if (r.at < this.timerAt) this.arm();
  }

  /** @internal */
  unschedule(r: Renewal): void {
    this.slots.remove(r);
    if (this.slots.size === 0) this.disarm();
  }

  private arm(): void {
    const at = this.slots.earliest();
    if (at === null) {
      this.disarm();
      return;
    }
    if (this.timer && this.timerAt === at) return;
    this.disarm();
    const ac = new AbortController();
    this.timer = ac;
    this.timerAt = at;
    this.clock.sleep(Math.max(0, at - this.clock.now()), ac.signal).then(
      () => {
        if (this.timer !== ac) return;
        this.timer = null;
        this.timerAt = Number.POSITIVE_INFINITY;
        this.wakeUp();
      },
      () => {},
    );
  }

  private disarm(): void {
    this.timer?.abort();
    this.timer = null;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  /** Sends everything due now; requests already past their deadline are answered `expired`. */
  private wakeUp(): void {
    const now = this.clock.now();
    const due = this.slots.take(now);
    this.counters.wakes += 1;
    let batch: Renewal[] = [];
    for (const r of due) {
      if (now >= r.deadline) {
        this.counters.expired += 1;
        r.settle(EXPIRED);
        continue;
      }
      batch.push(r);
      if (batch.length >= this.size) {
        this.send(batch, now);
        batch = [];
      }
    }
    if (batch.length > 0) this.send(batch, now);
    this.arm();
  }

  private send(items: Renewal[], sentAt: number): void {
    this.counters.batches += 1;
    this.counters.sent += items.length;
    new Batch(this.store, this.clock, items, sentAt).send();
  }
}
