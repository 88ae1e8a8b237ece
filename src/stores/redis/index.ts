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
import { isSentinelUrl, parseSentinelUrl, SENTINEL_PARAMS } from "./sentinel-url.js";
import { type RedisClientLike, RedisStore, type RedisStoreOptions } from "./store.js";

export { classifyRedisError } from "./classify.js";
export { LuaScript, SCRIPTS, type ScriptClient } from "./scripts.js";
export {
  isSentinelUrl,
  parseSentinelUrl,
  SENTINEL_DEFAULT_PORT,
  type SentinelTarget,
} from "./sentinel-url.js";
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
  /**
   * Reconnect delay cap behind Sentinel. A reconnect there first asks a
   * sentinel (alive while the primary is not) for the primary, so retrying
   * often is cheap, and a long backoff grown while the old primary was down
   * would keep clients away from the promoted one for seconds.
   */
  sentinelReconnectMaxMs: 250,
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
  /**
   * Reconnect delay cap; reconnects never stop. Default 5000 ms, or 250 ms
   * for `redis+sentinel://` (see {@link REDIS_DEFAULTS}).
   */
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

/** Where a Redis URL leads: one server (an ioredis URL) or a primary found through Sentinel. */
type ParsedRedisUrl = {
  /** Tenure's query options by target name. */
  fromUrl: Record<string, string>;
  /** The URL's credentials, scrubbed from driver messages. */
  secrets: string[];
} & ({ kind: "direct"; url: string } | { kind: "sentinel"; options: RedisOptions });

function queryOptions(params: Iterable<readonly [string, string]>, extra: readonly string[] = []) {
  const fromUrl: Record<string, string> = {};
  for (const [k, v] of params) {
    const target = QUERY_PARAMS[k];
    if (!target) {
      throw new ConfigError(
        `store ?${k}`,
        `unknown Redis URL option; accepted: ${[...Object.keys(QUERY_PARAMS), ...extra].join(", ")}`,
      );
    }
    fromUrl[target] = v;
  }
  return fromUrl;
}

function parseRedisUrl(url: string): ParsedRedisUrl {
  if (isSentinelUrl(url)) {
    const t = parseSentinelUrl(url);
    const fromUrl = queryOptions(t.params, SENTINEL_PARAMS);
    const secrets = [t.password, t.sentinelPassword].filter((x): x is string => !!x);
    const family = fromUrl.family;
    if (family !== undefined && family !== "4" && family !== "6" && family !== "0") {
      throw new ConfigError("store ?family", `must be 4, 6 or 0 (got ${family})`);
    }
    const options: RedisOptions = {
      sentinels: t.sentinels.map((s) => ({ host: s.host, port: s.port })),
      name: t.name,
      role: "master",
      db: t.db,
      ...(t.username !== undefined ? { username: t.username } : {}),
      ...(t.password !== undefined ? { password: t.password } : {}),
      ...(t.sentinelUsername !== undefined ? { sentinelUsername: t.sentinelUsername } : {}),
      ...(t.sentinelPassword !== undefined ? { sentinelPassword: t.sentinelPassword } : {}),
      ...(family !== undefined ? { family: Number(family) } : {}),
      // Subscribe to the sentinels' +switch-master: a failover moves the
      // client at once, even when the old primary is still reachable.
      failoverDetector: true,
    };
    return { kind: "sentinel", options, fromUrl, secrets };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError("store", `not a valid Redis URL: "${redactSecrets(url)}"`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new ConfigError(
      "store",
      `a Redis URL starts with redis://, rediss:// or redis+sentinel:// (got "${redactUrl(url)}")`,
    );
  }
  if (!u.hostname) throw new ConfigError("store", `Redis URL has no host: "${redactUrl(url)}"`);
  if (u.pathname && u.pathname !== "/" && !/^\/\d{1,2}$/.test(u.pathname)) {
    throw new ConfigError(
      "store",
      `the path of a Redis URL is a database number, e.g. /0 (got "${redactUrl(url)}")`,
    );
  }
  const fromUrl = queryOptions(u.searchParams);
  const secrets = u.password ? [...new Set([u.password, decodeURIComponent(u.password)])] : [];
  const clean = new URL(u.toString());
  clean.search = "";
  if (fromUrl.family) clean.searchParams.set("family", fromUrl.family);
  return { kind: "direct", url: clean.toString(), fromUrl, secrets };
}

/**
 * Opens a Redis store from `redis://[user:password@]host[:port][/db][?options]`,
 * `rediss://…` (TLS) or, for a primary with replicas watched by Sentinel,
 * `redis+sentinel://[user:password@]host:port[,host:port…]/MASTERNAME[?db=N&…]`
 * (the hosts are sentinels; `?sentinelUsername=`, `?sentinelPassword=` their
 * credentials; see sentinel-url.ts). Query options: `prefix`, `commandTimeoutMs`,
 * `connectTimeoutMs`, `connectionName`, `restartGuard`, `family`. The connection is checked
 * with PING: bad credentials throw a fatal `auth` StoreError at once; an
 * unreachable server does not (the client keeps reconnecting and calls fail
 * with transient errors until it answers).
 */
export async function openRedisStore(
  url: string,
  opts: OpenRedisStoreOptions = {},
): Promise<RedisStore> {
  const parsed = parseRedisUrl(url);
  const { fromUrl, secrets } = parsed;
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
      opts.reconnectMaxMs ??
        (parsed.kind === "sentinel"
          ? Math.max(REDIS_DEFAULTS.sentinelReconnectMaxMs, opts.reconnectMinMs ?? 0)
          : REDIS_DEFAULTS.reconnectMaxMs),
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
  /** Set when the store closes its connections: an `end` is then ours, not to be undone. */
  let closing = false;
  const make = (name: string, extra: RedisOptions = {}): Redis => {
    const c =
      parsed.kind === "sentinel"
        ? new RedisCtor({
            ...base,
            ...parsed.options,
            ...extra,
            // A sentinel that accepts the connection but never answers (paused,
            // overloaded) would otherwise hold the reconnect forever.
            sentinelCommandTimeout: o.commandTimeoutMs,
            connectionName: name,
          })
        : new RedisCtor(parsed.url, { ...base, ...extra, connectionName: name });
    const limiter = new RepeatLimiter();
    c.on("error", (e: unknown) => {
      const msg = scrub(e instanceof Error ? e.message : String(e), secrets);
      const hit = limiter.hit(msg);
      if (hit) logger?.warn("redis connection error", { err: msg, connection: name, ...hit });
    });
    c.on("ready", () => {
      if (limiter.reset() > 0) logger?.info("redis reconnected", { connection: name });
    });
    // ioredis' quit() ends the connection but leaves the failover detector's
    // sentinel connections open (only disconnect() cleans them up).
    const cleanUp = () => {
      if (parsed.kind === "sentinel") c.disconnect();
    };
    c.on("end", () => {
      if (closing) return cleanUp();
      // Not (yet) known to be our close: ioredis ends a client for good when
      // an attempt to connect is cut short, e.g. by the failover detector's
      // +switch-master arriving while the client waits for a sentinel to name
      // the primary; every call would then fail with "Connection is closed."
      // forever. Connect again, unless the store closed meanwhile.
      setTimeout(() => {
        if (closing) return cleanUp();
        if (c.status !== "end") return;
        logger?.warn("redis client ended without close(); reconnecting", { connection: name });
        c.connect().catch(() => {});
      }, o.reconnectMinMs);
    });
    return c;
  };

  const client = make(o.connectionName);
  const close = async () => {
    closing = true;
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
      // The store resubscribes on "ready" itself, its failure handled: ioredis'
      // own resubscribe leaves its promise unhandled, so a connection dropped
      // again before the reply crashed the process ("Connection is closed.").
      subscriber: () => make(`${o.connectionName}-sub`, { autoResubscribe: false }),
      closeClient: close,
      secrets,
    });
  } catch (e) {
    closing = true;
    client.disconnect();
    throw e;
  }

  try {
    await client.ping();
  } catch (e) {
    const err = toRedisStoreError(`open ${redactUrl(url)}`, e, secrets);
    if (!err.transient) {
      closing = true;
      client.disconnect();
      throw err;
    }
    logger?.warn("redis not reachable yet; will keep reconnecting", { err: err.message });
  }
  return store;
}
