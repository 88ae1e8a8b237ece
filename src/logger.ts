import { redactSecrets } from "./redact.js";

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
  const out: Logger = {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
  };
  Object.defineProperty(out, STREAM_LOGGER, { value: true });
  return out;
}

const STREAM_LOGGER = Symbol.for("tenure.logger.stream");

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

/** How a logger takes its arguments: Tenure's `(msg, fields)` or pino/bunyan's `(fields, msg)`. */
export type LoggerShape = "message-first" | "object-first";

/** Any logger with `info`/`warn`/`error` (and usually `debug`) methods: Tenure's, pino, winston, bunyan, console. */
export interface LoggerLike {
  debug?: (...args: never[]) => unknown;
  info: (...args: never[]) => unknown;
  warn: (...args: never[]) => unknown;
  error: (...args: never[]) => unknown;
}

const ADAPTED = Symbol.for("tenure.logger.adapted");

/**
 * The shape a known logger takes: pino (`bindings()` and `levels.values`) and
 * bunyan (`addStream()`) are object-first; winston, console and Tenure's own
 * are message-first.
 */
export function detectLoggerShape(l: LoggerLike): LoggerShape {
  const o = l as unknown as Record<string, unknown>;
  const levels = o.levels as { values?: unknown } | undefined;
  if (typeof o.bindings === "function" && levels && typeof levels === "object" && levels.values) {
    return "object-first"; // pino
  }
  if (typeof o.addStream === "function") return "object-first"; // bunyan
  return "message-first";
}

/** Fields with bigints as decimal strings (bunyan's JSON.stringify throws on them; pino/winston print them as lossy numbers). */
function plainFields(f: LogFields | undefined): LogFields {
  const out: LogFields = {};
  if (!f) return out;
  for (const [k, v] of Object.entries(f)) out[k] = typeof v === "bigint" ? v.toString() : v;
  return out;
}

/**
 * Adapts any common logger to Tenure's {@link Logger}: pino and bunyan
 * (called as `(fields, msg)`), winston and console (called as
 * `(msg, fields)`). Detected by shape (see {@link detectLoggerShape}); pass
 * `shape` for a logger it does not recognize. Bigint fields (tokens) become
 * decimal strings; a missing `debug` is a no-op. Applied by `createElector`
 * and `openStore` to the `logger` they are given.
 */
export function toLogger(l: LoggerLike, opts: { shape?: LoggerShape } = {}): Logger {
  if ((l as unknown as Record<symbol, unknown>)[ADAPTED] === true) return l as unknown as Logger;
  const shape = opts.shape ?? detectLoggerShape(l);
  const o = l as unknown as Record<string, unknown>;
  // Third-party loggers serialize bigints badly or not at all; Tenure's own
  // Logger implementations get the fields as they are.
  const known =
    shape === "object-first" || (typeof o.add === "function" && typeof o.configure === "function"); // winston
  const fieldsOf = known ? plainFields : (f: LogFields | undefined) => f ?? {};
  const isStreamLogger = (l as unknown as Record<symbol, unknown>)[STREAM_LOGGER] === true;
  if (isStreamLogger) return l as unknown as Logger;
  const call = (level: LogLevel) => {
    const fn = (l as unknown as Record<string, unknown>)[level];
    if (typeof fn !== "function") return () => {};
    const f = fn as (...args: unknown[]) => unknown;
    return shape === "object-first"
      ? (msg: string, fields?: LogFields) => {
          f.call(l, fieldsOf(fields), msg);
        }
      : (msg: string, fields?: LogFields) => {
          if (fields === undefined || Object.keys(fields).length === 0) f.call(l, msg);
          else f.call(l, msg, fieldsOf(fields));
        };
  };
  const out: Logger = {
    debug: call("debug"),
    info: call("info"),
    warn: call("warn"),
    error: call("error"),
  };
  Object.defineProperty(out, ADAPTED, { value: true });
  return out;
}

/** True when `l` can be given to {@link toLogger}. */
export function isLoggerLike(l: unknown): l is LoggerLike {
  if (!l || (typeof l !== "object" && typeof l !== "function")) return false;
  const o = l as Record<string, unknown>;
  return ["info", "warn", "error"].every((m) => typeof o[m] === "function");
}
