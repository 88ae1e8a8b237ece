import type { Clock } from "../clock.js";
import { ConfigError } from "../errors.js";
import { type Logger, type LoggerLike, toLogger } from "../logger.js";
import { redactSecrets, redactUrl, registerUrlSecrets } from "./classify.js";
import type { LeaseStore } from "./types.js";

/** Options every backend understands when opened by URL. */
export interface OpenStoreOptions {
  /** Clock for the memory store's expiry. Other stores use their server's clock. */
  clock?: Clock;
  /** Where the store logs reconnects and notifications. Default: silent. */
  logger?: Logger;
}

/** {@link OpenStoreOptions} as `openStore` takes them: any logger `toLogger` adapts (pino, winston, bunyan, console). */
export type OpenStoreInput = Omit<OpenStoreOptions, "logger"> & { logger?: Logger | LoggerLike };

type Opener = (url: string, opts: OpenStoreOptions) => Promise<LeaseStore>;

/** URL scheme → lazy opener, so each driver is loaded only when used. */
const OPENERS: Record<string, Opener> = {
  "memory:": async (_url, opts) => {
    const m = await import("../stores/memory/index.js");
    return new m.MemoryStore(opts.clock ? { clock: opts.clock } : {});
  },
  "sqlite:": async (url, opts) =>
    (await import("../stores/sqlite/index.js")).openSqliteStore(url, opts),
  "postgres:": async (url, opts) =>
    (await import("../stores/postgres/index.js")).openPostgresStore(url, opts),
  "postgresql:": async (url, opts) =>
    (await import("../stores/postgres/index.js")).openPostgresStore(url, opts),
  "redis:": async (url, opts) =>
    (await import("../stores/redis/index.js")).openRedisStore(url, opts),
  "rediss:": async (url, opts) =>
    (await import("../stores/redis/index.js")).openRedisStore(url, opts),
  "etcd:": async (url, opts) => (await import("../stores/etcd/index.js")).openEtcdStore(url, opts),
  "etcds:": async (url, opts) => (await import("../stores/etcd/index.js")).openEtcdStore(url, opts),
};

/** The URL schemes {@link openStore} accepts. */
export const STORE_SCHEMES = Object.freeze(Object.keys(OPENERS));

/**
 * Opens a lease store from a URL: `memory:`, `sqlite:PATH`, `postgres://…`,
 * `redis://…`, `rediss://…`, `etcd://host:port[,host:port…]`, `etcds://…`.
 * An unknown scheme or malformed URL throws {@link ConfigError}; the password
 * in a URL never appears in an error or log.
 */
export async function openStore(url: string, opts: OpenStoreInput = {}): Promise<LeaseStore> {
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
  const { logger, ...rest } = opts;
  const o: OpenStoreOptions = logger ? { ...rest, logger: toLogger(logger) } : rest;
  try {
    return await opener(url.trim(), o);
  } catch (e) {
    throw redactError(e);
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
