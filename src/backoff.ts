/** Exponential backoff with full jitter bounds: `initial · 2^(attempt−1)`, capped. */
export interface BackoffOptions {
  /** First delay in ms. */
  initialMs: number;
  /** Largest delay in ms. */
  maxMs: number;
  /** Fraction of the delay that is randomised, 0–1 (0.2 ⇒ ±10 %). */
  jitter?: number;
}

/**
 * Delay before retry number `attempt` (1-based). `random` returns [0, 1); tests
 * inject a fixed one.
 */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions,
  random: () => number = Math.random,
): number {
  const exp = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.max(0, Math.min(attempt - 1, 40)));
  const jitter = opts.jitter ?? 0;
  if (jitter <= 0) return Math.round(exp);
  const spread = exp * jitter;
  return Math.max(0, Math.round(Math.min(opts.maxMs, exp - spread / 2 + random() * spread)));
}
