import { raceDeadline, TIMED_OUT } from "./async.js";
import { systemClock } from "./clock.js";
import { ConfigError, errorMessage, isStoreError, StoreError } from "./errors.js";
import { MAX_TIMER_MS } from "./limits.js";
import { type Logger, type LoggerLike, toLogger } from "./logger.js";
import { redactSecrets, redactUrl, registerUrlSecrets } from "./store/classify.js";
import type { LeaseStore, OpenStoreOptions } from "./store/types.js";

export type { OpenStoreOptions } from "./store/types.js";

/** What {@link openStore} reports while it waits for a server (see `onWait`). */
export interface StoreWait {
  /** `waiting`: the first call failed, waiting starts; `progress`: still waiting; `ready`: it answered; `timed-out`: it did not answer in time. */
  readonly phase: "waiting" | "progress" | "ready" | "timed-out";
  /** The store URL with its credentials redacted. */
  readonly store: string;
  readonly waitedMs: number;
  readonly timeoutMs: number;
  /** Calls tried so far. */
  readonly attempt: number;
  /** The last failure (credentials redacted), or null once it answered. */
  readonly error: StoreError | null;
}

/** {@link OpenStoreOptions} as `openStore` takes them. */
export type OpenStoreInput = Omit<OpenStoreOptions, "logger"> & {
  /** Any logger `toLogger` adapts: Tenure's, pino, winston, bunyan, console. */
  logger?: Logger | LoggerLike;
  /**
   * How long `openStore` waits for a server that does not answer yet, in ms:
   * it retries a cheap read with backoff (100 ms doubling to 2 s) and
   * resolves as soon as one succeeds, or when the time is up. Default 0 (do
   * not wait). The same on every backend, and either way an unreachable
   * server never makes `openStore` throw: the store's calls fail with
   * transient `StoreError`s until the server answers. Bad credentials and
   * other fatal answers do throw.
   */
  connectTimeoutMs?: number;
  /**
   * Told when the wait starts (after the first failed call), then every
   * `progressEveryMs`, and how it ended. Default: logs `waiting for the store`
   * / `still waiting for the store` / `store answered` / `store did not answer
   * in time` at info/warn on `logger`.
   */
  onWait?: (w: StoreWait) => void;
  /** Interval of `progress` reports while waiting. Default 5 000. */
  progressEveryMs?: number;
};

/** A store `openStore` returns: `await using store = await openStore(url)` closes it at the end of the scope. */
export type DisposableLeaseStore = LeaseStore & { [Symbol.asyncDispose](): Promise<void> };

/** A lease name no one uses, read to learn whether a server answers. */
const PROBE_LEASE = "tenure.connect-probe";

type Opener = (url: string, opts: OpenStoreOptions) => Promise<LeaseStore>;

/** URL scheme → lazy opener, so each driver is loaded only when used. */
const OPENERS: Record<string, Opener> = {
  "memory:": async (_url, opts) => {
    const m = await import("./stores/memory/index.js");
    return new m.MemoryStore({
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  },
  "sqlite:": async (url, opts) =>
    (await import("./stores/sqlite/index.js")).openSqliteStore(url, opts),
  "postgres:": async (url, opts) =>
    (await import("./stores/postgres/index.js")).openPostgresStore(url, opts),
  "postgresql:": async (url, opts) =>
    (await import("./stores/postgres/index.js")).openPostgresStore(url, opts),
  "redis:": async (url, opts) =>
    (await import("./stores/redis/index.js")).openRedisStore(url, opts),
  "rediss:": async (url, opts) =>
    (await import("./stores/redis/index.js")).openRedisStore(url, opts),
  "redis+sentinel:": async (url, opts) =>
    (await import("./stores/redis/index.js")).openRedisStore(url, opts),
  "etcd:": async (url, opts) => (await import("./stores/etcd/index.js")).openEtcdStore(url, opts),
  "etcds:": async (url, opts) => (await import("./stores/etcd/index.js")).openEtcdStore(url, opts),
};

/** The URL schemes {@link openStore} accepts. */
export const STORE_SCHEMES = Object.freeze(Object.keys(OPENERS));

/**
 * Opens a lease store from a URL: `memory:`, `sqlite:PATH`, `postgres://…`,
 * `redis://…`, `rediss://…`, `redis+sentinel://host:port[,host:port…]/MASTERNAME`,
 * `etcd://host:port[,host:port…]`, `etcds://…`.
 * An unknown scheme or malformed URL throws {@link ConfigError}; the password
 * in a URL never appears in an error or log.
 */
export async function openStore(
  url: string,
  opts: OpenStoreInput = {},
): Promise<DisposableLeaseStore> {
  if (typeof url !== "string" || url.trim() === "") {
    throw new ConfigError("store", `must be a store URL (${STORE_SCHEMES.join(" ")})`);
  }
  const m = /^([a-z][a-z0-9+.-]*:)/i.exec(url.trim());
  const scheme = m?.[1]?.toLowerCase();
  const opener = scheme ? OPENERS[scheme] : undefined;
  if (!opener) {
    throw new ConfigError(
      "store",
      `unknown store URL scheme in "${redactUrl(url)}"; accepted: ${STORE_SCHEMES.map((s) => `${s}…`).join(", ")}`,
    );
  }
  registerUrlSecrets(url);
  const { logger, connectTimeoutMs = 0, onWait, progressEveryMs = 5000, ...rest } = opts;
  for (const [field, v] of [
    ["connectTimeoutMs", connectTimeoutMs],
    ["progressEveryMs", progressEveryMs],
  ] as const) {
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > MAX_TIMER_MS) {
      throw new ConfigError(
        field,
        `must be a number of ms from 0 to ${MAX_TIMER_MS}, got ${String(v)}`,
      );
    }
  }
  const log = logger ? toLogger(logger) : undefined;
  const o: OpenStoreOptions = log ? { ...rest, logger: log } : rest;
  let store: LeaseStore;
  try {
    store = await opener(url.trim(), o);
  } catch (e) {
    throw redactError(e);
  }
  if (connectTimeoutMs > 0) {
    const report = onWait ?? ((w: StoreWait) => (log ? logWait(log, w) : undefined));
    try {
      await waitForStore(store, redactUrl(url.trim()), connectTimeoutMs, progressEveryMs, report);
    } catch (e) {
      await store.close().catch(() => {});
      throw redactError(e);
    }
  }
  return store as DisposableLeaseStore;
}

function logWait(log: Logger, w: StoreWait): void {
  const fields = {
    store: w.store,
    waited: `${Math.round(w.waitedMs / 100) / 10}s`,
    timeout: `${Math.round(w.timeoutMs / 100) / 10}s`,
    attempt: w.attempt,
    ...(w.error ? { err: w.error.message } : {}),
  };
  if (w.phase === "waiting") log.info("waiting for the store to answer", fields);
  else if (w.phase === "progress") log.info("still waiting for the store", fields);
  else if (w.phase === "ready") log.info("store answered", fields);
  else log.warn("store did not answer in time; calls fail until it does", fields);
}

/**
 * Reads a probe lease until the store answers or `timeoutMs` passes. A fatal
 * answer (bad credentials, a missing driver…) throws; running out of time does not.
 */
async function waitForStore(
  store: LeaseStore,
  shown: string,
  timeoutMs: number,
  progressEveryMs: number,
  report: (w: StoreWait) => void,
): Promise<void> {
  const clock = systemClock;
  const start = clock.now();
  const deadline = start + timeoutMs;
  let delay = 100;
  let nextReport = Number.POSITIVE_INFINITY;
  let last: StoreError | null = null;
  const tell = (phase: StoreWait["phase"], attempt: number) => {
    try {
      report({
        phase,
        store: shown,
        waitedMs: clock.now() - start,
        timeoutMs,
        attempt,
        error: last,
      });
    } catch {
      // a reporter's failure is its own business
    }
  };
  for (let attempt = 1; ; attempt++) {
    const left = deadline - clock.now();
    try {
      await boundedProbe(store, Math.max(1, left));
      if (attempt > 1) {
        last = null;
        tell("ready", attempt);
      }
      return;
    } catch (e) {
      const err = isStoreError(e)
        ? e
        : new StoreError(redactSecrets(errorMessage(e)), { transient: true, kind: "timeout" });
      if (!err.transient) throw err;
      last = err;
    }
    const now = clock.now();
    if (attempt === 1) {
      tell("waiting", attempt);
      nextReport = now + progressEveryMs;
    } else if (now >= nextReport) {
      tell("progress", attempt);
      nextReport = now + progressEveryMs;
    }
    if (now >= deadline) {
      tell("timed-out", attempt);
      return;
    }
    await clock.sleep(Math.min(delay, Math.max(1, deadline - now)));
    delay = Math.min(delay * 2, 2000);
  }
}

/** One probe read, failing as a transient timeout if it takes longer than `ms`. */
async function boundedProbe(store: LeaseStore, ms: number): Promise<void> {
  const p = store.read(PROBE_LEASE);
  p.catch(() => {});
  if ((await raceDeadline(systemClock, p, ms)) === TIMED_OUT) {
    throw new StoreError(`tenure: the store gave no answer within ${Math.round(ms)} ms`, {
      transient: true,
      kind: "timeout",
    });
  }
}

/** The same error with every credential removed from its message (and its cause dropped if that quoted one). */
function redactError(e: unknown): unknown {
  if (!(e instanceof Error)) return new Error(redactSecrets(String(e)));
  const clean = redactSecrets(e.message);
  if (clean === e.message) return e;
  try {
    e.message = clean;
    if (e.stack) e.stack = redactSecrets(e.stack);
    if ("cause" in e) (e as { cause?: unknown }).cause = undefined;
    return e;
  } catch {
    return new Error(clean);
  }
}
