import { redactSecrets } from "./store/classify.js";

/** Structured log fields. Fixed keys used by Tenure: lease, holder, token, attempt, delayMs, reason, err. */
export type LogFields = Record<string, unknown>;

/** An injectable structured logger. Tenure's library default is {@link noopLogger}. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export type LogLevel = "debug" | "info" | "warn" | "error";
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** A logger that discards everything (the library default). */
export const noopLogger: Logger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

/** JSON.stringify replacer that keeps bigints and errors readable. */
export function logReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

function formatValue(v: unknown): string {
  if (typeof v === "string") return /[\s="]/.test(v) ? JSON.stringify(v) : v;
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Error) return JSON.stringify(`${v.name}: ${v.message}`);
  return JSON.stringify(v, logReplacer);
}

/**
 * A logger writing one line per entry to a stream: `human` (readable
 * `time level msg key=value…`) or `json` (one object per line). Credentials
 * (URL passwords, `password=`/`token=`… values) are redacted from every line.
 */
export function createStreamLogger(opts: {
  format?: "human" | "json";
  level?: LogLevel;
  stream?: { write(s: string): unknown };
  base?: LogFields;
}): Logger {
  const format = opts.format ?? "human";
  const min = LEVELS[opts.level ?? "info"];
  const stream = opts.stream ?? process.stderr;
  const base = opts.base ?? {};
  const write = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (LEVELS[level] < min) return;
    const all = { ...base, ...fields };
    if (format === "json") {
      stream.write(
        `${redactSecrets(JSON.stringify({ time: new Date().toISOString(), level, msg, ...all }, logReplacer))}\n`,
      );
      return;
    }
    const kv = Object.entries(all)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(" ");
    stream.write(
      redactSecrets(
        `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${kv ? ` ${kv}` : ""}\n`,
      ),
    );
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
  };
}

/**
 * Logs a repeating failure at most once per backoff step: the first
 * occurrence, then at the 2nd, 4th, 8th… consecutive repeat, each time with the
 * count of repeats it suppressed. A different failure, or a success, starts over.
 */
export class RepeatLimiter {
  private key: string | null = null;
  private count = 0;
  private suppressed = 0;

  /** Records one failure; returns the fields to log, or null when this one is suppressed. */
  hit(key: string): { repeats: number; suppressed: number } | null {
    if (key !== this.key) {
      this.key = key;
      this.count = 0;
      this.suppressed = 0;
    }
    this.count += 1;
    const n = this.count;
    if ((n & (n - 1)) === 0) {
      const out = { repeats: n, suppressed: this.suppressed };
      this.suppressed = 0;
      return out;
    }
    this.suppressed += 1;
    return null;
  }

  /** Clears the streak; returns how many failures it held (0 if none). */
  reset(): number {
    const n = this.count;
    this.key = null;
    this.count = 0;
    this.suppressed = 0;
    return n;
  }
}
