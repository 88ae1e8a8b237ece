/**
 * Numeric limits and the one integer-range check every option and argument
 * goes through, so the bound and the message are written once.
 */
import { ConfigError } from "./errors.js";

/** Longest delay a Node timer honours (2^31 − 1 ms); a longer one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * `v` when it is an integer from `min` to `max`, else a ConfigError naming
 * `field` and the accepted range: "must be an integer from 1 to 2147483647
 * (ms), got 0". `unit` is appended to the range, e.g. " (ms)".
 */
export function checkInt(field: string, v: unknown, min: number, max: number, unit = ""): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(
      field,
      `must be an integer from ${min} to ${max}${unit}, got ${String(v)}`,
    );
  }
  return v;
}
