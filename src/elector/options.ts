import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { type Clock, systemClock } from "../clock.js";
import { ConfigError } from "../errors.js";
import { checkInt, MAX_TIMER_MS } from "../limits.js";
import { isLoggerLike, type Logger, type LoggerLike, noopLogger, toLogger } from "../logger.js";
import type { ElectorStore } from "../store/types.js";
import { validateHolder, validateLeaseName } from "../store/validate.js";

/** Options of {@link createElector}. Every timing is in milliseconds. */
export interface ElectorOptions {
  /** Where leases live (see `openStore`). Required. The elector never closes it. */
  store: ElectorStore;
  /** Lease name: 1–128 characters of `A–Z a–z 0–9 . _ : / -`, starting with a letter or digit. Required. */
  name: string;
  /** Lease time-to-live. Default 15 000. */
  ttlMs?: number;
  /** How often the leader renews. Default ttlMs / 3. Must be < ttlMs − safetyMarginMs. */
  renewIntervalMs?: number;
  /** How often a follower polls when it has no better hint. Default ttlMs / 5. */
  retryMs?: number;
  /**
   * Subtracted from the trust window to absorb clock-rate drift and scheduling
   * delay: a leader trusts itself until `sentAt + ttlMs − safetyMarginMs`.
   * Default max(100, 2 % of ttlMs). Must be ≥ 0 and < ttlMs.
   */
  safetyMarginMs?: number;
  /**
   * This process's identity in the store. Default `hostname:pid:random`. At
   * most 255 characters. Unique per running process: the store answers an
   * acquire by a lease's live holder with that holder's term (the same token).
   */
  holderId?: string;
  /** Pause after resigning before campaigning again, so another process can win. Default retryMs. */
  resignCooldownMs?: number;
  /** Largest delay between attempts while the store keeps failing. Default max(retryMs, ttlMs / 2). */
  maxBackoffMs?: number;
  /** A store call taking longer than this counts as a transient timeout. Default min(ttlMs, 10 000). */
  storeTimeoutMs?: number;
  /** health() turns unhealthy after the store has been unreachable this long. Default max(60 000, 4 × ttlMs). */
  unreachableAfterMs?: number;
  /** Bound on stopping leader work when a term ends before the lease is released. Default 10 000. */
  stopTimeoutMs?: number;
  /**
   * Structured logger: Tenure's `Logger`, pino, winston, bunyan or console
   * (adapted by `toLogger`). Default: silent.
   */
  logger?: Logger | LoggerLike;
  /** Time source. Default: the monotonic system clock. Inject a FakeClock in tests. */
  clock?: Clock;
  /** Random source in [0, 1) for jitter. Default Math.random. */
  random?: () => number;
}

/** Fully resolved options. */
export interface ResolvedElectorOptions {
  readonly store: ElectorStore;
  readonly name: string;
  readonly ttlMs: number;
  readonly renewIntervalMs: number;
  readonly retryMs: number;
  readonly safetyMarginMs: number;
  readonly holderId: string;
  readonly resignCooldownMs: number;
  readonly maxBackoffMs: number;
  readonly storeTimeoutMs: number;
  readonly unreachableAfterMs: number;
  readonly stopTimeoutMs: number;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: () => number;
}

/** Default values, as documented on {@link ElectorOptions}. */
export const ELECTOR_DEFAULTS = Object.freeze({
  ttlMs: 15_000,
  renewIntervalFraction: 1 / 3,
  retryFraction: 1 / 5,
  safetyMarginMinMs: 100,
  safetyMarginFraction: 0.02,
  storeTimeoutMaxMs: 10_000,
  unreachableAfterMinMs: 60_000,
  stopTimeoutMs: 10_000,
});

/** A duration option: an integer number of ms from `min` to the longest timer. */
function ms(field: string, v: unknown, min: 0 | 1 = 1): number {
  return checkInt(field, v, min, MAX_TIMER_MS, " (ms)");
}

/** `hostname:pid:` of this process, computed once (a process may create 100 000 electors). */
let holderPrefix: string | null = null;
/** Random bytes drawn in bulk; 4 of them per holder id. */
let pool: Buffer | null = null;
let poolAt = 0;
const POOL_BYTES = 4096;

/** The default holder id: `hostname:pid:random` (8 hex digits, fresh per call). */
export function defaultHolderId(): string {
  holderPrefix ??= `${hostname()}:${process.pid}:`;
  if (pool === null || poolAt + 4 > pool.length) {
    pool = randomBytes(POOL_BYTES);
    poolAt = 0;
  }
  const hex = pool.toString("hex", poolAt, poolAt + 4);
  poolAt += 4;
  return holderPrefix + hex;
}

function isStore(s: unknown): s is ElectorStore {
  return (
    !!s &&
    typeof s === "object" &&
    ["acquire", "renew", "release", "read"].every(
      (m) => typeof (s as Record<string, unknown>)[m] === "function",
    )
  );
}

/** Validates options and fills defaults; throws ConfigError naming the first bad field. */
export function resolveElectorOptions(o: ElectorOptions): ResolvedElectorOptions {
  if (!o || typeof o !== "object") throw new ConfigError("options", "must be an object");
  if (!isStore(o.store)) {
    throw new ConfigError("store", "must be a LeaseStore (from openStore(url) or a store class)");
  }
  const name = validateLeaseName(o.name, "name");
  const timing = resolveTiming(o);
  const holderId = validateHolder(o.holderId ?? defaultHolderId(), "holderId");
  const bounds = resolveBounds(o, timing);
  const hooks = resolveHooks(o);
  // One literal with every field (not spreads): its fields sit inside the object.
  return Object.freeze({
    store: o.store,
    name,
    ttlMs: timing.ttlMs,
    renewIntervalMs: timing.renewIntervalMs,
    retryMs: timing.retryMs,
    safetyMarginMs: timing.safetyMarginMs,
    holderId,
    resignCooldownMs: bounds.resignCooldownMs,
    maxBackoffMs: bounds.maxBackoffMs,
    storeTimeoutMs: bounds.storeTimeoutMs,
    unreachableAfterMs: bounds.unreachableAfterMs,
    stopTimeoutMs: bounds.stopTimeoutMs,
    logger: hooks.logger,
    clock: hooks.clock,
    random: hooks.random,
  });
}

type Timing = Pick<
  ResolvedElectorOptions,
  "ttlMs" | "safetyMarginMs" | "renewIntervalMs" | "retryMs"
>;

/**
 * The lease timing and its relations: safetyMarginMs < ttlMs, and
 * renewIntervalMs < ttlMs − safetyMarginMs (the trust window), so a leader
 * renews before it stops trusting itself.
 */
function resolveTiming(o: ElectorOptions): Timing {
  const ttlMs = ms("ttlMs", o.ttlMs ?? ELECTOR_DEFAULTS.ttlMs);
  if (ttlMs < 10) throw new ConfigError("ttlMs", `must be at least 10 ms, got ${ttlMs}`);
  const safetyMarginMs = ms(
    "safetyMarginMs",
    o.safetyMarginMs ??
      Math.max(
        ELECTOR_DEFAULTS.safetyMarginMinMs,
        Math.round(ttlMs * ELECTOR_DEFAULTS.safetyMarginFraction),
      ),
    0,
  );
  if (safetyMarginMs >= ttlMs) {
    throw new ConfigError(
      "safetyMarginMs",
      `must be less than ttlMs (${ttlMs}), got ${safetyMarginMs}`,
    );
  }
  const window = ttlMs - safetyMarginMs;
  const renewIntervalMs = ms(
    "renewIntervalMs",
    o.renewIntervalMs ?? Math.max(1, Math.floor(ttlMs * ELECTOR_DEFAULTS.renewIntervalFraction)),
  );
  if (renewIntervalMs >= window) {
    throw new ConfigError(
      "renewIntervalMs",
      `must be less than ttlMs − safetyMarginMs (${ttlMs} − ${safetyMarginMs} = ${window}), got ${renewIntervalMs}`,
    );
  }
  const retryMs = ms(
    "retryMs",
    o.retryMs ?? Math.max(1, Math.floor(ttlMs * ELECTOR_DEFAULTS.retryFraction)),
  );
  return { ttlMs, safetyMarginMs, renewIntervalMs, retryMs };
}

/** Cooldown, backoff and the bounds on store calls, health and stopping; defaults derive from the timing. */
function resolveBounds(
  o: ElectorOptions,
  { ttlMs, retryMs }: Timing,
): Pick<
  ResolvedElectorOptions,
  "resignCooldownMs" | "maxBackoffMs" | "storeTimeoutMs" | "unreachableAfterMs" | "stopTimeoutMs"
> {
  return {
    resignCooldownMs: ms("resignCooldownMs", o.resignCooldownMs ?? retryMs, 0),
    maxBackoffMs: ms("maxBackoffMs", o.maxBackoffMs ?? Math.max(retryMs, Math.floor(ttlMs / 2))),
    storeTimeoutMs: ms(
      "storeTimeoutMs",
      o.storeTimeoutMs ?? Math.min(ttlMs, ELECTOR_DEFAULTS.storeTimeoutMaxMs),
    ),
    unreachableAfterMs: ms(
      "unreachableAfterMs",
      o.unreachableAfterMs ?? Math.max(ELECTOR_DEFAULTS.unreachableAfterMinMs, 4 * ttlMs),
    ),
    stopTimeoutMs: ms("stopTimeoutMs", o.stopTimeoutMs ?? ELECTOR_DEFAULTS.stopTimeoutMs),
  };
}

/**
 * The injectable hooks every component takes (`logger`, `clock`, `random`):
 * one check and one set of defaults, so electors and groups accept, refuse
 * and default the same things.
 */
export function resolveHooks(o: {
  logger?: LoggerLike | undefined;
  clock?: Clock | undefined;
  random?: (() => number) | undefined;
}): { logger: Logger; clock: Clock; random: () => number } {
  if (o.logger !== undefined && !isLoggerLike(o.logger)) {
    throw new ConfigError(
      "logger",
      "must have info/warn/error (and debug) methods: a Tenure Logger, pino, winston, bunyan or console",
    );
  }
  const clock = o.clock as { now?: unknown; sleep?: unknown } | undefined;
  if (
    clock !== undefined &&
    (typeof clock?.now !== "function" || typeof clock.sleep !== "function")
  ) {
    throw new ConfigError("clock", "must have now() and sleep(ms, signal) methods");
  }
  if (o.random !== undefined && typeof o.random !== "function") {
    throw new ConfigError("random", "must be a function returning a number in [0, 1)");
  }
  return {
    logger: o.logger === undefined ? noopLogger : toLogger(o.logger),
    clock: o.clock ?? systemClock,
    random: o.random ?? Math.random,
  };
}
