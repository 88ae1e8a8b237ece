/**
 * The Redis lease store (`redis://…`, `rediss://…`) on ioredis. See
 * docs/stores/redis.md for the guarantees and the key layout.
 */
import type { Redis, RedisOptions } from "ioredis";
import { ConfigError, StoreError } from "../../errors.js";
import { RepeatLimiter } from "../../logger.js";
import { redactSecrets, redactUrl } from "../../store/classify.js";
import type { OpenStoreOptions } from "../../store/types.js";
import { intOption } from "../common/options.js";
import { scrub, toRedisStoreError } from "./classify.js";
import { type RedisClientLike, RedisStore, type RedisStoreOptions } from "./store.js";

export { classifyRedisError } from "./classify.js";
export { LuaScript, SCRIPTS, type ScriptClient } from "./scripts.js";
export {
  DEFAULT_KEY_PREFIX,
  type FencedSetOptions,
  type RedisClientLike,
  RedisStore,
  type RedisStoreOptions,
  type RedisSubscriberLike,
} from "./store.js";

/** Defaults of {@link OpenRedisStoreOptions}, frozen. */
export const REDIS_DEFAULTS = Object.freeze({
  commandTimeoutMs: 3000,
  connectTimeoutMs: 5000,
  maxRetriesPerRequest: 1,
  connectionName: "tenure",
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
});

/** Options of {@link openRedisStore}; each can also be given as a URL query parameter where noted. */
export interface OpenRedisStoreOptions
  extends OpenStoreOptions,
    Pick<RedisStoreOptions, "keyPrefix" | "restartGuard"> {
  /**
   * A command (including one waiting in the offline queue while the client
   * reconnects) fails with a transient `timeout` StoreError after this many
   * milliseconds. Default 3000. URL: `?commandTimeoutMs=`.
   */
  commandTimeoutMs?: number;
  /** TCP connect (and TLS handshake) timeout. Default 5000. URL: `?connectTimeoutMs=`. */
  connectTimeoutMs?: number;
  /**
   * How many reconnects a command waits through before failing with a
   * transient error (ioredis `maxRetriesPerRequest`). Small, so calls fail fast
   * and the elector decides by its deadline. Default 1.
   */
  maxRetriesPerRequest?: number;
  /** CLIENT SETNAME of the store's connection (the subscriber gets `-sub` appended). Default `"tenure"`. URL: `?connectionName=`. */
  connectionName?: string;
  /** First reconnect delay; doubles per attempt with jitter. Default 100 ms. */
  reconnectMinMs?: number;
  /** Reconnect delay cap; reconnects never stop. Default 5000 ms. */
  reconnectMaxMs?: number;
  /** Further ioredis options (e.g. `tls` settings). Tenure's own settings above win. Default none. */
  redisOptions?: RedisOptions;
}

const QUERY_PARAMS: Record<string, keyof OpenRedisStoreOptions | "family"> = {
  prefix: "keyPrefix",
  keyPrefix: "keyPrefix",
  commandTimeoutMs: "commandTimeoutMs",
  connectTimeoutMs: "connectTimeoutMs",
  connectionName: "connectionName",
  restartGuard: "restartGuard",
  family: "family",
};

function boolOption(field: string, v: unknown): boolean {
  if (v === true || v === "true" || v === "1") return true;
  if (v === false || v === "false" || v === "0") return false;
  throw new ConfigError(field, `must be true or false (got ${String(v)})`);
}

/**
 * Opens a Redis store from `redis://[user:password@]host[:port][/db][?options]`
 * or `rediss://…` (TLS). Query options: `prefix`, `commandTimeoutMs`,
 * `connectTimeoutMs`, `connectionName`, `restartGuard`, `family`. The connection is checked
 * with PING: bad credentials throw a fatal `auth` StoreError at once; an
 * unreachable server does not (the client keeps reconnecting and calls fail
 * with transient errors until it answers).
 */
export async function openRedisStore(
  url: string,
  opts: OpenRedisStoreOptions = {},
): Promise<RedisStore> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError("store", `not a valid Redis URL: "${redactSecrets(url)}"`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new ConfigError(
      "store",
      `a Redis URL starts with redis:// or rediss:// (got "${redactUrl(url)}")`,
    );
  }
  if (!u.hostname) throw new ConfigError("store", `Redis URL has no host: "${redactUrl(url)}"`);
  if (u.pathname && u.pathname !== "/" && !/^\/\d{1,2}$/.test(u.pathname)) {
    throw new ConfigError(
      "store",
      `the path of a Redis URL is a database number, e.g. /0 (got "${redactUrl(url)}")`,
    );
  }
  const fromUrl: Record<string, string> = {};
  for (const [k, v] of u.searchParams) {
    const target = QUERY_PARAMS[k];
    if (!target) {
      throw new ConfigError(
        `store ?${k}`,
        `unknown Redis URL option; accepted: ${Object.keys(QUERY_PARAMS).join(", ")}`,
      );
    }
    fromUrl[target] = v;
  }
  const secrets = u.password ? [...new Set([u.password, decodeURIComponent(u.password)])] : [];

  const o = {
    keyPrefix: opts.keyPrefix ?? fromUrl.keyPrefix,
    restartGuard: boolOption("restartGuard", opts.restartGuard ?? fromUrl.restartGuard ?? true),
    commandTimeoutMs: intOption(
      "commandTimeoutMs",
      opts.commandTimeoutMs ?? fromUrl.commandTimeoutMs ?? REDIS_DEFAULTS.commandTimeoutMs,
      1,
      600_000,
    ),
    connectTimeoutMs: intOption(
      "connectTimeoutMs",
      opts.connectTimeoutMs ?? fromUrl.connectTimeoutMs ?? REDIS_DEFAULTS.connectTimeoutMs,
      1,
      600_000,
    ),
    maxRetriesPerRequest: intOption(
      "maxRetriesPerRequest",
      opts.maxRetriesPerRequest ?? REDIS_DEFAULTS.maxRetriesPerRequest,
      0,
      100,
    ),
    reconnectMinMs: intOption(
      "reconnectMinMs",
      opts.reconnectMinMs ?? REDIS_DEFAULTS.reconnectMinMs,
      1,
      600_000,
    ),
    reconnectMaxMs: intOption(
      "reconnectMaxMs",
      opts.reconnectMaxMs ?? REDIS_DEFAULTS.reconnectMaxMs,
      1,
      600_000,
    ),
    connectionName: opts.connectionName ?? fromUrl.connectionName ?? REDIS_DEFAULTS.connectionName,
  };
  if (o.reconnectMaxMs < o.reconnectMinMs) {
    throw new ConfigError("reconnectMaxMs", `must be ≥ reconnectMinMs (${o.reconnectMinMs})`);
  }
  if (!/^[!-~]{1,64}$/.test(o.connectionName)) {
    throw new ConfigError("connectionName", "must be 1–64 printable characters without spaces");
  }

  let RedisCtor: typeof Redis;
  try {
    RedisCtor = (await import("ioredis")).Redis;
  } catch (e) {
    throw new StoreError(
      "tenure redis: the ioredis package is not installed (npm install ioredis)",
      { transient: false, kind: "config", cause: e },
    );
  }

  const logger = opts.logger;
  const clean = new URL(u.toString());
  clean.search = "";
  if (fromUrl.family) clean.searchParams.set("family", fromUrl.family);
  const base: RedisOptions = {
    ...opts.redisOptions,
    commandTimeout: o.commandTimeoutMs,
    connectTimeout: o.connectTimeoutMs,
    maxRetriesPerRequest: o.maxRetriesPerRequest,
    enableOfflineQueue: true,
    enableReadyCheck: true,
    autoResubscribe: true,
    lazyConnect: false,
    retryStrategy: (times: number) => {
      const exp = Math.min(o.reconnectMaxMs, o.reconnectMinMs * 2 ** Math.min(times - 1, 20));
      return Math.round(exp / 2 + (Math.random() * exp) / 2);
    },
    // After a failover the old master answers READONLY: reconnect (Sentinel
    // and DNS then lead to the new master); the failed call still surfaces.
    reconnectOnError: (err: Error) => (err.message.startsWith("READONLY") ? 1 : false),
  };
  const make = (name: string): Redis => {
    const c = new RedisCtor(clean.toString(), { ...base, connectionName: name });
    const limiter = new RepeatLimiter();
    c.on("error", (e: unknown) => {
      const msg = scrub(e instanceof Error ? e.message : String(e), secrets);
      const hit = limiter.hit(msg);
      if (hit) logger?.warn("redis connection error", { err: msg, connection: name, ...hit });
    });
    c.on("ready", () => {
      if (limiter.reset() > 0) logger?.info("redis reconnected", { connection: name });
    });
    return c;
  };

  const client = make(o.connectionName);
  const close = async () => {
    if (client.status === "ready") {
      await client.quit().catch(() => client.disconnect());
    } else {
      client.disconnect();
    }
  };
  let store: RedisStore;
  try {
    store = new RedisStore(client as unknown as RedisClientLike, {
      ...(o.keyPrefix !== undefined ? { keyPrefix: o.keyPrefix } : {}),
      restartGuard: o.restartGuard,
      ...(logger ? { logger } : {}),
      subscriber: () => make(`${o.connectionName}-sub`),
      closeClient: close,
      secrets,
    });
  } catch (e) {
    client.disconnect();
    throw e;
  }

  try {
    await client.ping();
  } catch (e) {
    const err = toRedisStoreError(`open ${redactUrl(url)}`, e, secrets);
    if (!err.transient) {
      client.disconnect();
      throw err;
    }
    logger?.warn("redis not reachable yet; will keep reconnecting", { err: err.message });
  }
  return store;
}
