import type { LeaseRef, RenewItem } from "../store/types.js";
import type { Batch } from "./batch.js";
import { LEFT, type RenewOutcome } from "./outcome.js";
import type { SlotEntry } from "./slots.js";

/** What a {@link Renewal} needs of its renewer. */
export interface RenewalHost {
  schedule(r: Renewal): void;
  unschedule(r: Renewal): void;
  now(): number;
  /** Hands `o` to `r`'s client later (in a microtask), never from inside the renewer. */
  deliver(r: Renewal, o: RenewOutcome): void;
}

/**
 * A client that takes outcomes by a method call instead of a promise per
 * request ({@link Renewal.ask}): no promise, closure or suspended async
 * frame per renewal, for processes that hold very many terms.
 */
export interface RenewalClient {
  onRenewal(r: Renewal, o: RenewOutcome): void;
}

/**
 * One term's membership of a shared renewer: the client side. The term asks
 * for its next renewal with {@link next} and awaits the outcome; it owns no
 * timer. It leaves with {@link leave}, or when the signal given to
 * `Renewer.join` aborts: a request waiting in a slot is taken out (nothing of
 * it is sent afterwards), one in flight is answered `left` at once and its
 * late result is dropped.
 */
export class Renewal implements SlotEntry {
  /** @internal when due (min of the requested time and the deadline) */
  at = 0;
  /** @internal the earliest time it may go with an earlier slot */
  early = 0;
  /** @internal */
  slot = Number.NaN;
  /** @internal end of the trust window the request is judged against */
  deadline = 0;
  /** @internal the batch carrying the request, while in flight */
  batch: Batch | null = null;
  /** The lease and ttl sent for this term, the same object every time. */
  readonly item: RenewItem;
  private resolve: ((o: RenewOutcome) => void) | null = null;
  /** The client of the request made with {@link ask}, while it waits. */
  private client: RenewalClient | null = null;
  private gone = false;
  /** hurry() came while no request was waiting: the next request is due at once. */
  private hurried = false;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort: (() => void) | undefined;

  constructor(
    private readonly host: RenewalHost,
    lease: LeaseRef,
    ttlMs: number,
    signal?: AbortSignal,
  ) {
    this.item = Object.freeze({ lease, ttlMs });
    if (signal) {
      this.signal = signal;
      this.onAbort = () => this.leave();
      if (signal.aborted) this.gone = true;
      else signal.addEventListener("abort", this.onAbort, { once: true });
    }
  }

  /** True once the client left. */
  get left(): boolean {
    return this.gone;
  }

  /**
   * Asks for a renewal at `dueAt` and resolves with its outcome. The request
   * is judged against `deadline` (the end of the current trust window): it is
   * not sent from then on (`expired`), and one in flight then is answered
   * `timeout`. It may be sent up to `earlyMs` before `dueAt`, together with
   * an earlier slot. One request at a time.
   */
  next(dueAt: number, deadline: number, earlyMs = 0): Promise<RenewOutcome> {
    if (this.gone) return Promise.resolve(LEFT);
    if (this.waiting) throw new Error("tenure renewer: one renewal request at a time");
    const p = new Promise<RenewOutcome>((resolve) => {
      this.resolve = resolve;
    });
    this.request(dueAt, deadline, earlyMs);
    return p;
  }

  /**
   * {@link next}, with the outcome handed to `client.onRenewal(this, o)`
   * (always later, in a microtask; `left` too) instead of a promise.
   */
  ask(dueAt: number, deadline: number, earlyMs: number, client: RenewalClient): void {
    if (this.waiting) throw new Error("tenure renewer: one renewal request at a time");
    this.client = client;
    if (this.gone) {
      this.settle(LEFT);
      return;
    }
    this.request(dueAt, deadline, earlyMs);
  }

  private get waiting(): boolean {
    return this.resolve !== null || this.client !== null;
  }

  private request(dueAt: number, deadline: number, earlyMs: number): void {
    this.deadline = deadline;
    if (this.hurried) {
      this.hurried = false;
      dueAt = Math.min(dueAt, this.host.now());
    }
    this.at = Math.min(dueAt, deadline);
    this.early = Math.min(this.at, dueAt - Math.max(0, earlyMs));
    this.host.schedule(this);
  }

  /**
   * Asks for a renewal now (the store notified a change of the lease: a
   * renewal confirms the term, or tells it is lost, like a read would, and
   * batched with whatever else is due). A request waiting in a slot becomes
   * due now; otherwise (in flight, or not asked for yet) the next request is.
   */
  hurry(): void {
    if (this.gone) return;
    if (this.waiting && !Number.isNaN(this.slot)) {
      const now = this.host.now();
      if (this.at <= now) return;
      this.host.unschedule(this);
      this.at = now;
      this.early = now;
      this.host.schedule(this);
    } else this.hurried = true;
  }

  /** Leaves the renewer now: nothing of this term is sent afterwards. Idempotent. */
  leave(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.signal && this.onAbort) this.signal.removeEventListener("abort", this.onAbort);
    this.host.unschedule(this);
    this.batch?.drop(this);
    this.settle(LEFT);
  }

  /** @internal hands the outcome to the waiting client. */
  settle(o: RenewOutcome): void {
    const resolve = this.resolve;
    if (resolve) {
      this.resolve = null;
      resolve(o);
      return;
    }
    if (this.client) this.host.deliver(this, o);
  }

  /** @internal called by the host: hands `o` to the waiting client. */
  deliverTo(o: RenewOutcome): void {
    const client = this.client;
    this.client = null;
    client?.onRenewal(this, o);
  }
}
