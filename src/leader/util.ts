import type { Clock } from "../clock.js";
import { errorMessage } from "../errors.js";

/** An AbortSignal aborted as soon as any of `signals` aborts (with that signal's reason). */
export function anySignal(...signals: AbortSignal[]): AbortSignal {
  return AbortSignal.any(signals);
}

/** Sleeps `ms` on `clock`; resolves false (never rejects) when `signal` aborts first. */
export async function pause(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await clock.sleep(Math.max(0, ms), signal);
    return !signal.aborted;
  } catch {
    return false;
  }
}

export const TIMED_OUT: unique symbol = Symbol("timed out");

/** Races `p` against a clock timer of `ms`; the timer is cancelled once `p` settles. */
export async function within<T>(
  clock: Clock,
  p: Promise<T>,
  ms: number,
): Promise<T | typeof TIMED_OUT> {
  const ac = new AbortController();
  const timedOut = (): typeof TIMED_OUT => TIMED_OUT;
  const timer = clock.sleep(ms, ac.signal).then(timedOut, timedOut);
  try {
    return await Promise.race([p, timer]);
  } finally {
    ac.abort();
  }
}

/** Calls `fn` and turns a synchronous throw into a rejection. */
export function attempt<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}

export function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(errorMessage(e));
}
