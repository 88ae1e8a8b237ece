import { callAsync } from "../async.js";
import type { Clock } from "../clock.js";
import { StoreError } from "../errors.js";
import { checkInt } from "../limits.js";
import { RENEWER_DEFAULTS } from "./renewer.js";
import { resultCountError } from "./result-count.js";

/** Counters of a batch queue (the acquirer, the releaser), for benches and metrics. */
export interface BatchStats {
  /** Store round trips sent: a `*Many` call, or one batch sent item by item. */
  batches: number;
  /** Requests sent. */
  sent: number;
  /** Batches refused as a whole because of one item or record, then sent item by item. */
  fallbacks: number;
  /** Requests not sent: still queued when their caller stopped waiting. */
  dropped: number;
}

/** One queued request: its item, its caller's bounds and its promise's settlers. */
interface Pending<I, A> {
  readonly item: I;
  /** Monotonic time after which the caller no longer waits: not sent from then on. */
  readonly deadline: number;
  /** Once sent, how long the caller waits for the answer (ms from the batch's send). */
  readonly timeoutMs: number;
  readonly resolve: (a: A) => void;
  readonly reject: (e: unknown) => void;
  /** Answered (or timed out): later answers are dropped. */
  settled: boolean;
}

function settle<A>(p: Pending<unknown, A>, a: A): void {
  if (p.settled) return;
  p.settled = true;
  p.resolve(a);
}

function fail<A>(p: Pending<unknown, A>, e: unknown): void {
  if (p.settled) return;
  p.settled = true;
  p.reject(e);
}

/**
 * The batching skeleton the acquirer and the releaser share (DESIGN §7): a
 * request of item `I` is answered `A`, from the store's answer `R` to one
 * item. Requests issued in the same turn of the event loop (before the
 * queue's microtask runs) leave together, in batches of at most `batchSize`,
 * each as one `*Many` round trip where {@link hasMany} allows, else as one
 * single call per item. At most `maxInFlight` batches are out at once;
 * requests that come meanwhile wait for one to come back and then leave
 * together. A batch stops counting as out at its {@link holdUntil} time, so a
 * store that never answers cannot hold the others back. A request still
 * queued at its caller's deadline is not sent (it rejects with a transient
 * `timeout` StoreError); one sent but not answered `timeoutMs` after its
 * batch's send rejects then (one timer per batch). A `*Many` call that fails
 * as a whole fails each of its requests, except where {@link itemByItem}
 * says the failure is one bad item's or record's: then each item is sent
 * alone, so only the bad one fails. The queue holds no timer while idle.
 */
export abstract class BatchQueue<I, R, A> {
  private size: number = RENEWER_DEFAULTS.batchSize;
  private queue: Pending<I, A>[] = [];
  private flushQueued = false;
  private inFlight = 0;
  private readonly counters: BatchStats = { batches: 0, sent: 0, fallbacks: 0, dropped: 0 };

  /**
   * `who` prefixes messages ("tenure acquirer"), `verb` names the single call
   * ("acquire", its many call "acquireMany").
   */
  constructor(
    readonly clock: Clock,
    private readonly who: string,
    private readonly verb: string,
    private readonly maxInFlight: number,
    opts: { batchSize?: number },
  ) {
    this.configure(opts);
  }

  /** Most leases per round trip. */
  get batchSize(): number {
    return this.size;
  }

  /** Changes options; batches sent from now on follow them. Throws ConfigError on a bad value. */
  configure(opts: { batchSize?: number }): void {
    if (opts.batchSize !== undefined)
      this.size = checkInt("batchSize", opts.batchSize, 1, 1_000_000);
  }

  /** Counters since creation. */
  stats(): Readonly<BatchStats> {
    return this.counters;
  }

  /** Whether a batch of `n` items goes as one `*Many` call (else item by item). */
  protected abstract hasMany(n: number): boolean;
  /** The store's `*Many` call for `items` (only called where {@link hasMany} said yes). */
  protected abstract many(items: I[]): Promise<readonly R[]>;
  /** The store's single call for `item`. */
  protected abstract one(item: I): Promise<R>;
  /** The answer to a request from its result in a `*Many` answer; `sentAt`: the call's send. */
  protected abstract fromMany(result: R, sentAt: number): A;
  /** The answer to a request from its single call's result (as from a `*Many` answer unless overridden). */
  protected fromOne(result: R, sentAt: number): A {
    return this.fromMany(result, sentAt);
  }
  /** Monotonic time a batch sent at `sentAt` stops counting as out even if unanswered. */
  protected abstract holdUntil(
    batch: readonly { readonly item: I; readonly deadline: number }[],
    sentAt: number,
  ): number;
  /** Whether a failed `*Many` call of several items is one bad item's: then each goes alone. */
  protected abstract itemByItem(e: unknown): boolean;

  /**
   * Queues `item`, batched with the other requests of this turn. `deadline`
   * (monotonic ms): when the caller stops waiting. `timeoutMs`: once sent, how
   * long the caller waits for the answer.
   */
  protected enqueue(item: I, deadline: number, timeoutMs: number): Promise<A> {
    return new Promise<A>((resolve, reject) => {
      this.queue.push({ item, deadline, timeoutMs, resolve, reject, settled: false });
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.queue.length === 0 || this.inFlight >= this.maxInFlight) return;
    const sentAt = this.clock.now();
    if (this.queue.some((p) => p.deadline <= sentAt)) {
      const live: Pending<I, A>[] = [];
      for (const p of this.queue) {
        if (p.deadline > sentAt) live.push(p);
        else {
          this.counters.dropped += 1;
          fail(
            p,
            new StoreError(`${this.who}: ${this.verb} not sent: its caller stopped waiting`, {
              transient: true,
              kind: "timeout",
            }),
          );
        }
      }
      this.queue = live;
    }
    while (this.queue.length > 0 && this.inFlight < this.maxInFlight) {
      const batch = this.queue.length <= this.size ? this.queue : this.queue.slice(0, this.size);
      this.queue = batch === this.queue ? [] : this.queue.slice(this.size);
      this.send(batch, sentAt);
    }
  }

  /** Sends `batch`; it counts as out until every item is answered or its hold time has passed. */
  private send(batch: Pending<I, A>[], sentAt: number): void {
    this.counters.batches += 1;
    this.counters.sent += batch.length;
    this.inFlight += 1;
    const holdUntil = this.holdUntil(batch, sentAt);
    const timer = new AbortController();
    // The answer timeouts' timer, where a request has a timeout: stopped once every request is
    // settled (not when the batch stops counting as out: a request may still be unanswered then).
    let timeouts: AbortController | null = null;
    let out = true;
    const back = () => {
      if (timeouts && batch.every((p) => p.settled)) timeouts.abort();
      if (!out) return;
      out = false;
      timer.abort();
      this.inFlight -= 1;
      this.flush();
    };
    if (Number.isFinite(holdUntil))
      this.clock.sleep(holdUntil - sentAt, timer.signal).then(back, () => {});
    timeouts = this.armTimeouts(batch, sentAt);
    let left = batch.length;
    const answered = () => {
      left -= 1;
      if (left === 0) back();
    };
    if (!this.hasMany(batch.length)) {
      this.oneByOne(batch, sentAt, answered);
      return;
    }
    callAsync(() => this.many(batch.map((p) => p.item))).then(
      (results) => {
        const wrong = resultCountError(results, batch.length, `${this.who}: ${this.verb}Many`);
        if (wrong) for (const p of batch) fail(p, wrong);
        else
          for (let i = 0; i < batch.length; i++)
            settle(batch[i]!, this.fromMany(results[i]!, sentAt));
        back();
      },
      (error: unknown) => {
        if (batch.length > 1 && this.itemByItem(error)) {
          this.counters.fallbacks += 1;
          this.oneByOne(batch, this.clock.now(), answered);
          return;
        }
        for (const p of batch) fail(p, error);
        back();
      },
    );
  }

  /** Starts the answer timeouts' timer of `batch`, or answers null where no request has a timeout. */
  private armTimeouts(batch: readonly Pending<I, A>[], sentAt: number): AbortController | null {
    let first = Number.POSITIVE_INFINITY;
    for (const p of batch) if (p.timeoutMs < first) first = p.timeoutMs;
    if (first === Number.POSITIVE_INFINITY) return null;
    const stop = new AbortController();
    this.armTimeout(batch, sentAt, stop.signal);
    return stop;
  }

  /**
   * One timer per batch for its requests' answer timeouts: a request still
   * unanswered `timeoutMs` after the batch was sent fails then with a
   * transient `timeout` StoreError (callers hold no timer of their own).
   */
  private armTimeout(batch: readonly Pending<I, A>[], sentAt: number, stop: AbortSignal): void {
    let first = Number.POSITIVE_INFINITY;
    for (const p of batch) if (!p.settled && p.timeoutMs < first) first = p.timeoutMs;
    if (first === Number.POSITIVE_INFINITY) return;
    this.clock.sleep(Math.max(0, sentAt + first - this.clock.now()), stop).then(
      () => {
        const waited = this.clock.now() - sentAt;
        for (const p of batch) {
          if (p.settled || p.timeoutMs > waited) continue;
          fail(
            p,
            new StoreError(
              `${this.who}: ${this.verb} timed out after ${Math.round(p.timeoutMs)} ms`,
              {
                transient: true,
                kind: "timeout",
              },
            ),
          );
        }
        if (!stop.aborted) this.armTimeout(batch, sentAt, stop);
      },
      () => {},
    );
  }

  private oneByOne(batch: readonly Pending<I, A>[], sentAt: number, answered: () => void): void {
    for (const p of batch) {
      callAsync(() => this.one(p.item)).then(
        (result) => {
          settle(p, this.fromOne(result, sentAt));
          answered();
        },
        (e: unknown) => {
          fail(p, e);
          answered();
        },
      );
    }
  }
}
