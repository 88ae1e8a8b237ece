import type { Clock } from "../clock.js";

interface Timer {
  at: number;
  seq: number;
  resolve: () => void;
  cancel: () => void;
}

/**
 * A manual clock for deterministic tests of timing logic. Nothing happens
 * until the test calls {@link advance} or {@link jump}; timers then fire in
 * due order and pending promise continuations run between them.
 */
export class FakeClock implements Clock {
  private t: number;
  private readonly wallOffset: number;
  private seq = 0;
  private timers: Timer[] = [];

  constructor(opts: { start?: number; wallStart?: number } = {}) {
    this.t = opts.start ?? 1_000_000;
    this.wallOffset = (opts.wallStart ?? Date.UTC(2026, 0, 1)) - this.t;
  }

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.t + this.wallOffset;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        this.timers = this.timers.filter((x) => x !== timer);
        reject(signal?.reason);
      };
      const timer: Timer = {
        at: this.t + Math.max(0, ms),
        seq: this.seq++,
        resolve: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        cancel: onAbort,
      };
      this.timers.push(timer);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Number of pending timers. */
  pending(): number {
    return this.timers.length;
  }

  /** Due time of the next timer, or null. */
  nextAt(): number | null {
    const next = this.nextTimer();
    return next ? next.at : null;
  }

  private nextTimer(): Timer | undefined {
    let best: Timer | undefined;
    for (const x of this.timers) {
      if (!best || x.at < best.at || (x.at === best.at && x.seq < best.seq)) best = x;
    }
    return best;
  }

  /** Lets pending promise continuations and I/O callbacks run. */
  async settle(rounds = 5): Promise<void> {
    for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
  }

  private async fireDue(): Promise<boolean> {
    const next = this.nextTimer();
    if (!next || next.at > this.t) return false;
    this.timers = this.timers.filter((x) => x !== next);
    next.resolve();
    await this.settle();
    return true;
  }

  /** Moves time forward by `ms`, firing each timer at its own due time, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    await this.settle();
    for (;;) {
      const next = this.nextTimer();
      if (!next || next.at > target) break;
      if (next.at > this.t) this.t = next.at;
      await this.fireDue();
    }
    this.t = target;
    await this.settle();
  }

  /**
   * Moves time forward by `ms` at once, as a stalled event loop or SIGSTOP
   * would: every timer that fell due fires afterwards, all seeing the new time.
   */
  async jump(ms: number): Promise<void> {
    this.t += ms;
    while (await this.fireDue()) {
      // keep firing what is due
    }
    await this.settle();
  }

  /**
   * Moves time forward without firing anything, as if the event loop were
   * blocked right now; timers fire at the next advance/jump/settle.
   */
  stall(ms: number): void {
    this.t += ms;
  }

  /** Advances in steps of `stepMs` until `cond()` holds; throws after `maxMs`. */
  async advanceUntil(cond: () => boolean, maxMs: number, stepMs = 1): Promise<number> {
    const start = this.t;
    while (!cond()) {
      if (this.t - start > maxMs) throw new Error(`condition not met within ${maxMs} fake ms`);
      const next = this.nextAt();
      const step = next !== null && next > this.t ? Math.min(next - this.t, maxMs) : stepMs;
      await this.advance(Math.max(stepMs, step));
    }
    return this.t - start;
  }
}
