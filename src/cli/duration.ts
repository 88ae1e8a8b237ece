import { MAX_TIMER_MS } from "../limits.js";
import { UsageError } from "./exit-codes.js";

const UNITS: Record<string, number> = {
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
};
const ORDER = Object.keys(UNITS);
const PART = /(\d+(?:\.\d+)?)(ms|d|h|m|s)/gy;

/**
 * Parses a duration flag: numbers with units, largest first, `500ms`, `15s`,
 * `1.5s`, `2m`, `1h`, `1d`, `1m30s`, `1h30m`, `1d12h`; a bare `0` is also
 * accepted. A bare non-zero number is refused because `--ttl 15` is
 * ambiguous. Throws a {@link UsageError} naming the flag.
 */
export function parseDuration(flag: string, text: string, { min = 0 } = {}): number {
  const t = text.trim();
  const bad = () =>
    new UsageError(
      `${flag}: ${JSON.stringify(text)} is not a duration; use numbers with units, largest first: 500ms, 15s, 2m, 1m30s, 1h, 1d`,
    );
  let total = 0;
  if (t !== "0") {
    PART.lastIndex = 0;
    let last = -1;
    let end = 0;
    for (let m = PART.exec(t); m; m = PART.exec(t)) {
      const rank = ORDER.indexOf(m[2]!);
      if (rank <= last) throw bad(); // units in order, each once: 1m30s, not 30s1m
      last = rank;
      total += Number(m[1]) * UNITS[m[2]!]!;
      end = PART.lastIndex;
    }
    if (last < 0 || end !== t.length) throw bad();
  }
  const ms = Math.round(total);
  if (ms < min || ms > MAX_TIMER_MS) {
    throw new UsageError(
      `${flag}: ${text} is out of range; use ${formatDuration(min)} to ${formatDuration(MAX_TIMER_MS)}`,
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

/**
 * `1500` → `1.5s`, `90000` → `1m30s`, `250` → `250ms`, `5400000` → `1h30m`,
 * `90000000` → `1d1h`; {@link parseDuration} reads every form it prints.
 */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(1))}s`;
  const total = Math.round(ms / 1000);
  const parts: [number, string][] = [
    [Math.floor(total / 86_400), "d"],
    [Math.floor((total % 86_400) / 3600), "h"],
    [Math.floor((total % 3600) / 60), "m"],
    [total % 60, "s"],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  // two units are precise enough for a log line: 1d1h, 2h5m, 1m30s
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, u]) => `${n}${u}`)
    .join("");
}
