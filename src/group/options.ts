import type { Clock } from "../clock.js";
import { defaultHolderId, ELECTOR_DEFAULTS, resolveHooks } from "../elector/options.js";
import { ConfigError } from "../errors.js";
import { checkInt, MAX_TIMER_MS } from "../limits.js";
import type { Logger, LoggerLike } from "../logger.js";
import type { ElectorStore, LeaseAdmin } from "../store/types.js";
import { validateHolder, validateLeaseName } from "../store/validate.js";

/** Most partitions a group may have. */
export const MAX_PARTITIONS = 65_536;
/** Largest member weight. */
export const MAX_WEIGHT = 1_000;
/**
 * Longest group name: a member lease is `NAME/members/P/WEIGHT/HASH16`, at
 * most 36 characters longer than the name, and lease names stop at 128.
 */
export const MAX_GROUP_NAME = 92;

/** Options of {@link createGroup}. Every timing is in milliseconds. */
export interface GroupOptions {
  /** Where partition and member leases live. Required. The group never closes it. */
  store: ElectorStore & Pick<LeaseAdmin, "list">;
  /** Group name: a lease name (see `LEASE_NAME_PATTERN`) of at most 92 characters. Required. */
  name: string;
  /** Number of partitions, an integer from 1 to 65 536. Every member of a group must agree on it. Required. */
  partitions: number;
  /** Time-to-live of every partition lease and of the member lease. Default 15 000. */
  ttlMs?: number;
  /** Relative share of partitions this member takes: an integer from 1 to 1 000. Default 1. */
  weight?: number;
  /**
   * This process's identity in the store. Default `hostname:pid:random`. At
   * most 255 characters. Unique per running process: the store answers an
   * acquire by a lease's live holder with that holder's term (the same token).
   */
  holderId?: string;
  /** How often the membership is read again from the store. Default ttlMs / 5. */
  refreshMs?: number;
  /** Bound on stopping a partition's work before its lease is released (elector `stopTimeoutMs`). Default 10 000. */
  stopTimeoutMs?: number;
  /** Structured logger: a Tenure Logger, pino, winston, bunyan or console (adapted by `toLogger`). Default: silent. */
  logger?: LoggerLike;
  /** Time source. Default: the monotonic system clock. Inject a FakeClock in tests. */
  clock?: Clock;
  /** Random source in [0, 1) for jitter. Default Math.random. */
  random?: () => number;
}

export interface ResolvedGroupOptions {
  readonly store: ElectorStore & Pick<LeaseAdmin, "list">;
  readonly name: string;
  readonly partitions: number;
  readonly ttlMs: number;
  readonly weight: number;
  readonly holderId: string;
  readonly refreshMs: number;
  readonly stopTimeoutMs: number;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly random: () => number;
}

/** Validates group options and fills defaults; throws ConfigError naming the first bad field. */
export function resolveGroupOptions(o: GroupOptions): ResolvedGroupOptions {
  if (!o || typeof o !== "object") throw new ConfigError("options", "must be an object");
  const s = o.store as unknown as Record<string, unknown> | undefined;
  if (
    !s ||
    typeof s !== "object" ||
    !["acquire", "renew", "release", "read", "list"].every((m) => typeof s[m] === "function")
  ) {
    throw new ConfigError("store", "must be a LeaseStore (from openStore(url) or a store class)");
  }
  const name = validateLeaseName(o.name, "name");
  if (name.length > MAX_GROUP_NAME) {
    throw new ConfigError(
      "name",
      `a group name must be at most ${MAX_GROUP_NAME} characters (its member and partition leases are longer), got ${name.length}`,
    );
  }
  const partitions = checkInt("partitions", o.partitions, 1, MAX_PARTITIONS);
  const ttlMs = checkInt("ttlMs", o.ttlMs ?? ELECTOR_DEFAULTS.ttlMs, 10, MAX_TIMER_MS, " (ms)");
  const weight = checkInt("weight", o.weight ?? 1, 1, MAX_WEIGHT);
  const holderId = validateHolder(o.holderId ?? defaultHolderId(), "holderId");
  const refreshMs = checkInt(
    "refreshMs",
    o.refreshMs ?? Math.max(1, Math.floor(ttlMs / 5)),
    1,
    MAX_TIMER_MS,
    " (ms)",
  );
  const stopTimeoutMs = checkInt(
    "stopTimeoutMs",
    o.stopTimeoutMs ?? ELECTOR_DEFAULTS.stopTimeoutMs,
    1,
    MAX_TIMER_MS,
    " (ms)",
  );
  const hooks = resolveHooks(o);
  return Object.freeze({
    store: o.store,
    name,
    partitions,
    ttlMs,
    weight,
    holderId,
    refreshMs,
    stopTimeoutMs,
    ...hooks,
  });
}
