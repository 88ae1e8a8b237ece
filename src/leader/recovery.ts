import { ConfigError } from "../errors.js";
import { checkInt, MAX_TIMER_MS } from "../limits.js";

/** Reconnect after a failure with exponential backoff (the default strategy). */
export interface ReconnectStrategy {
  readonly strategy: "reconnect";
  /** First delay before reconnecting. Default 1 000 ms. At least 1. */
  readonly initialDelayMs: number;
  /** Largest delay between attempts. Default 60 000 ms. At least initialDelayMs. */
  readonly maxDelayMs: number;
  /**
   * Failed attempts in a row after which the stream gives up for this term
   * (health then reports it). 0 = unlimited. Default 0. The counter resets
   * once the stream calls `healthy()`.
   */
  readonly maxAttempts: number;
}

/** Log, wait for logs to flush, then exit the process so a supervisor restarts it. */
export interface ExitStrategy {
  readonly strategy: "exit";
  /** Delay between the failure and the exit, for flushing. Default 5 000 ms. */
  readonly exitDelayMs: number;
  /** Process exit code, 0–255. Default 1. */
  readonly exitCode: number;
}

/** Log the failure and leave the stream stopped for the rest of the term. */
export interface LogStrategy {
  readonly strategy: "log";
}

/** What a stream does when its `run` fails while this process still leads. */
export type RecoveryStrategy = ReconnectStrategy | ExitStrategy | LogStrategy;

/** Input form: any field may be left out and takes its default. */
export type RecoveryInput =
  | ({ strategy?: "reconnect" } & Partial<Omit<ReconnectStrategy, "strategy">>)
  | ({ strategy: "exit" } & Partial<Omit<ExitStrategy, "strategy">>)
  | LogStrategy;

/** Defaults of the recovery strategies. */
export const RECOVERY_DEFAULTS = Object.freeze({
  strategy: "reconnect" as const,
  initialDelayMs: 1_000,
  maxDelayMs: 60_000,
  maxAttempts: 0,
  exitDelayMs: 5_000,
  exitCode: 1,
});

/**
 * Validates a recovery strategy and fills its defaults. `fieldPrefix` is
 * prepended to field names in errors. Throws ConfigError.
 */
export function resolveRecovery(
  input: RecoveryInput = {},
  fieldPrefix = "recovery.",
): RecoveryStrategy {
  if (!input || typeof input !== "object") {
    throw new ConfigError(fieldPrefix.replace(/\.$/, ""), "must be an object");
  }
  const strategy = input.strategy ?? RECOVERY_DEFAULTS.strategy;
  const f = (n: string) => `${fieldPrefix}${n}`;
  if (strategy === "reconnect") {
    const i = input as Partial<ReconnectStrategy>;
    const initialDelayMs = checkInt(
      f("initialDelayMs"),
      i.initialDelayMs ?? RECOVERY_DEFAULTS.initialDelayMs,
      1,
      MAX_TIMER_MS,
      " (ms)",
    );
    const maxDelayMs = checkInt(
      f("maxDelayMs"),
      i.maxDelayMs ?? Math.max(initialDelayMs, RECOVERY_DEFAULTS.maxDelayMs),
      initialDelayMs,
      MAX_TIMER_MS,
      " (ms; at least initialDelayMs)",
    );
    const maxAttempts = checkInt(
      f("maxAttempts"),
      i.maxAttempts ?? RECOVERY_DEFAULTS.maxAttempts,
      0,
      MAX_TIMER_MS,
      " (0 = unlimited)",
    );
    return Object.freeze({ strategy, initialDelayMs, maxDelayMs, maxAttempts });
  }
  if (strategy === "exit") {
    const i = input as Partial<ExitStrategy>;
    const exitDelayMs = checkInt(
      f("exitDelayMs"),
      i.exitDelayMs ?? RECOVERY_DEFAULTS.exitDelayMs,
      0,
      MAX_TIMER_MS,
      " (ms)",
    );
    const exitCode = checkInt(f("exitCode"), i.exitCode ?? RECOVERY_DEFAULTS.exitCode, 0, 255);
    return Object.freeze({ strategy, exitDelayMs, exitCode });
  }
  if (strategy === "log") return Object.freeze({ strategy });
  throw new ConfigError(
    f("strategy"),
    `must be "reconnect", "exit" or "log", got ${JSON.stringify(strategy)}`,
  );
}

function envInt(
  env: Record<string, string | undefined>,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const s = raw.trim();
  // Only plain decimal digits count ("1e3", "0x10" and " 5 " inside are refused as text).
  return checkInt(name, /^-?\d+$/.test(s) ? Number(s) : JSON.stringify(raw), min, max);
}

/**
 * Reads a recovery strategy from environment variables:
 * `PREFIX_ERROR_STRATEGY` (`reconnect` | `exit` | `log`, default reconnect),
 * `PREFIX_RECONNECT_INITIAL_DELAY_MS` (≥ 1, default 1000),
 * `PREFIX_RECONNECT_MAX_DELAY_MS` (≥ initial, default 60000),
 * `PREFIX_RECONNECT_MAX_ATTEMPTS` (≥ 0, 0 = unlimited, default 0),
 * `PREFIX_EXIT_DELAY_MS` (≥ 0, default 5000) and `PREFIX_EXIT_CODE` (0–255,
 * default 1). Every variable that is set is validated, whichever strategy is
 * chosen; a bad one throws ConfigError naming the variable and the range.
 */
export function strategyFromEnv(
  prefix: string,
  env: Record<string, string | undefined> = process.env,
): RecoveryStrategy {
  if (typeof prefix !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(prefix)) {
    throw new ConfigError(
      "prefix",
      `must be an environment variable prefix like "REPLICATION", got ${JSON.stringify(prefix)}`,
    );
  }
  const p = prefix.replace(/_+$/, "");
  const v = (s: string) => `${p}_${s}`;
  const rawStrategy = env[v("ERROR_STRATEGY")]?.trim().toLowerCase();
  const strategy = rawStrategy === undefined || rawStrategy === "" ? "reconnect" : rawStrategy;
  if (strategy !== "reconnect" && strategy !== "exit" && strategy !== "log") {
    throw new ConfigError(
      v("ERROR_STRATEGY"),
      `must be "reconnect", "exit" or "log", got ${JSON.stringify(env[v("ERROR_STRATEGY")])}`,
    );
  }
  const initialDelayMs = envInt(env, v("RECONNECT_INITIAL_DELAY_MS"), 1, MAX_TIMER_MS);
  const maxDelayMs = envInt(env, v("RECONNECT_MAX_DELAY_MS"), 1, MAX_TIMER_MS);
  const maxAttempts = envInt(env, v("RECONNECT_MAX_ATTEMPTS"), 0, MAX_TIMER_MS);
  const exitDelayMs = envInt(env, v("EXIT_DELAY_MS"), 0, MAX_TIMER_MS);
  const exitCode = envInt(env, v("EXIT_CODE"), 0, 255);
  const initial = initialDelayMs ?? RECOVERY_DEFAULTS.initialDelayMs;
  if (maxDelayMs !== undefined && maxDelayMs < initial) {
    throw new ConfigError(
      v("RECONNECT_MAX_DELAY_MS"),
      `must be at least the initial delay (${initial} ms), got ${maxDelayMs}`,
    );
  }
  if (strategy === "exit") {
    return resolveRecovery({ strategy, exitDelayMs, exitCode }, `${p}_`);
  }
  if (strategy === "log") return resolveRecovery({ strategy }, `${p}_`);
  return resolveRecovery({ strategy, initialDelayMs, maxDelayMs, maxAttempts }, `${p}_`);
}
