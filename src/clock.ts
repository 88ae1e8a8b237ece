/**
 * Time source used by every timing decision in Tenure. Inject a fake one in
 * tests (see `tenure/testing`); production uses the monotonic system clock.
 */
export interface Clock {
  /** Monotonic milliseconds. Never jumps with the wall clock. */
  now(): number;
  /**
   * Resolves after `ms` milliseconds, or rejects with the signal's reason as
   * soon as `signal` aborts. `ms <= 0` resolves on the next turn.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Wall-clock milliseconds since the epoch (for cron schedules only). */
  wallNow(): number;
}

/** Read once: `performance.timeOrigin` is a getter that costs more than `performance.now()`. */
const TIME_ORIGIN = performance.timeOrigin;

class SystemClock implements Clock {
  now(): number {
    return TIME_ORIGIN + performance.now();
  }
  wallNow(): number {
    return Date.now();
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      const timer = setTimeout(
        () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        Math.max(0, ms),
      );
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/** The process's monotonic clock. */
export const systemClock: Clock = new SystemClock();
