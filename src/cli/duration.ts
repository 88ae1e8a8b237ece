import { UsageError } from "./exit-codes.js";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const MAX_MS = 2_147_483_647;

/**
 * Parses a duration flag: a number with a unit, `500ms`, `15s`, `1.5s`, `2m`,
 * `1h`; a bare `0` is also accepted. A bare non-zero number is refused because
 * `--ttl 15` is ambiguous. Throws a {@link UsageError} naming the flag.
 */
export function parseDuration(flag: string, text: string, { min = 0 } = {}): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) {
    throw new UsageError(
      `${flag}: ${JSON.stringify(text)} is not a duration; use a number with a unit: 500ms, 15s, 2m, 1h`,
    );
  }
  const ms = Math.round(Number(m[1]) * UNITS[m[2] ?? "ms"]!);
  if (ms < min || ms > MAX_MS) {
    throw new UsageError(
      `${flag}: ${text} is out of range; use ${formatDuration(min)} to ${formatDuration(MAX_MS)}`,
    );
  }
  return ms;
}

/** Parses a non-negative integer flag (counts, ports). */
export function parseCount(flag: string, text: string, { min = 0, max = 1_000_000 } = {}): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min || Number(text) > max) {
    throw new UsageError(
      `${flag}: ${JSON.stringify(text)} must be a whole number from ${min} to ${max}`,
    );
  }
  return Number(text);
}

/** `1500` → `1.5s`, `90000` → `1m30s`, `250` → `250ms`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  const m = Math.floor(ms / 60_000);
  const s = Math.round((ms % 60_000) / 1000);
  return s ? `${m}m${s}s` : `${m}m`;
}
