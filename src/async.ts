/**
 * The few promise helpers the elector, leader work and stores share. The
 * deadline race is safety-critical (a store call that never answers must not
 * hold a term past its trust window), so it exists once, here.
 */
import type { Clock } from "./clock.js";

/** What {@link raceDeadline} resolves to when the deadline (or `cancel`) came first. */
export const TIMED_OUT: unique symbol = Symbol("timed out");
export type TimedOut = typeof TIMED_OUT;

/**
 * Races `p` against a timer of `ms` on `clock`, and against `cancel` when
 * given. Resolves to `p`'s value, or {@link TIMED_OUT} when the timer fires or
 * `cancel` aborts first; rejects when `p` rejects first. The timer is
 * cancelled once the race is decided, so nothing is left scheduled. A late
 * rejection of `p` after the deadline is the caller's to handle.
 */
export async function raceDeadline<T>(
  clock: Clock,
  p: Promise<T>,
  ms: number,
  cancel?: AbortSignal,
): Promise<T | TimedOut> {
  const ac = new AbortController();
  const timedOut = (): TimedOut => TIMED_OUT;
  const racers: Promise<T | TimedOut>[] = [p, clock.sleep(ms, ac.signal).then(timedOut, timedOut)];
  let onCancel: (() => void) | undefined;
  if (cancel) {
    racers.push(
      new Promise<TimedOut>((resolve) => {
        onCancel = () => resolve(TIMED_OUT);
        if (cancel.aborted) onCancel();
        else cancel.addEventListener("abort", onCancel, { once: true });
      }),
    );
  }
  try {
    return await Promise.race(racers);
  } finally {
    ac.abort();
    if (cancel && onCancel) cancel.removeEventListener("abort", onCancel);
  }
}

/**
 * Sleeps `ms` on `clock`. Resolves true when the time passed, false (never
 * rejects) when `signal` aborted first.
 */
export async function pause(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await clock.sleep(Math.max(0, ms), signal);
    return !signal.aborted;
  } catch {
    return false;
  }
}

/** Calls `fn` (user code) and turns a synchronous throw into a rejection. */
export function callAsync<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e);
  }
}
