/**
 * The etcd v3 lease store (`etcd://host:port[,host:port…]`, `etcds://…` for
 * TLS) on the `etcd3` client. See docs/stores/etcd.md for the guarantees and
 * the key layout.
 */
import { readFileSync } from "node:fs";
import type { Etcd3, IOptions } from "etcd3";
import { ConfigError, StoreError } from "../../errors.js";
import { redactSecrets } from "../../store/classify.js";
import type { OpenStoreOptions } from "../../store/types.js";
import { intOption } from "../common/options.js";
import { toEtcdStoreError } from "./classify.js";
import { idempotent, memberPolicy } from "./members.js";
import {
  DEFAULT_ETCD_CALL_TIMEOUT_MS,
  DEFAULT_ETCD_PREFIX,
  type EtcdClientLike,
  EtcdStore,
  type EtcdStoreOptions,
} from "./store.js";

export { classifyEtcdError, toEtcdStoreError } from "./classify.js";
export {
  DEFAULT_ETCD_CALL_TIMEOUT_MS,
  DEFAULT_ETCD_PREFIX,
  type EtcdClientLike,
  EtcdStore,
  type EtcdStoreOptions,
  ttlSeconds,
} from "./store.js";

/** Defaults of {@link OpenEtcdStoreOptions}, frozen. */
export const ETCD_DEFAULTS = Object.freeze({
  prefix: DEFAULT_ETCD_PREFIX,
  callTimeoutMs: DEFAULT_ETCD_CALL_TIMEOUT_MS,
  port: 2379,
  /** A member that failed a call is skipped for this long, doubling while it keeps failing (clusters only). */
  memberCooldownMs: 1000,
  /**
   * A member that has not answered a call within this is passed over for a
   * cooldown, and a read goes to another member too (clusters only; see
   * members.ts). Well above a healthy round trip, well below a ttl.
   */
  memberHedgeMs: 250,
  /** Watch stream reconnect backoff: first delay and cap. */
  watchReconnectMinMs: 100,
  watchReconnectMaxMs: 2000,
});

/** Options of {@link openEtcdStore}; `prefix` and `callTimeoutMs` can also be URL query parameters. */
export interface OpenEtcdStoreOptions extends OpenStoreOptions {
  /** Key prefix (see {@link EtcdStoreOptions.prefix}). Default `"tenure/"`. URL: `?prefix=`. */
  prefix?: string;
  /** Deadline of one store call, all round trips together. Default 3000 ms. URL: `?callTimeoutMs=`. */
  callTimeoutMs?: number;
  /**
   * TLS material for `etcds://`: PEM buffers. Default: the system CAs, no
   * client certificate. URL: `?ca=PATH&cert=PATH&key=PATH` (files).
   */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Further `etcd3` client options (e.g. `grpcOptions`). Tenure's own settings win. Default none. */
  etcdOptions?: Partial<IOptions>;
}

const QUERY_PARAMS = new Set(["prefix", "callTimeoutMs", "ca", "cert", "key"]);

/** A parsed etcd URL. */
export interface EtcdUrl {
  readonly tls: boolean;
  /** `host:port` of each member (IPv6 in brackets). */
  readonly hosts: readonly string[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly params: ReadonlyMap<string, string>;
}

/**
 * Parses `etcd://[user:password@]host[:port][,host[:port]…][/][?options]`
 * (or `etcds://…`). The port defaults to 2379. Throws {@link ConfigError}
 * naming what is wrong; the password never appears in it.
 */
export function parseEtcdUrl(url: string): EtcdUrl {
  const shown = redactSecrets(url);
  const m = /^(etcds?):\/\/(?:([^@/?#]*)@)?([^/?#]*)\/?(?:\?([^#]*))?$/i.exec(url.trim());
  if (!m) {
    throw new ConfigError(
      "store",
      `an etcd URL looks like etcd://host:port[,host:port…][?prefix=…] (got "${shown}")`,
    );
  }
  const tls = m[1]!.toLowerCase() === "etcds";
  let username: string | undefined;
  let password: string | undefined;
  if (m[2] !== undefined) {
    const i = m[2].indexOf(":");
    username = decodeURIComponent(i < 0 ? m[2] : m[2].slice(0, i));
    password = i < 0 ? undefined : decodeURIComponent(m[2].slice(i + 1));
    if (!username) throw new ConfigError("store", `etcd URL has credentials but no user name`);
  }
  const hosts: string[] = [];
  for (const part of m[3]!.split(",")) {
    const h = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(part.trim());
    const port = h?.[2] === undefined ? ETCD_DEFAULTS.port : Number(h[2]);
    if (!h || port < 1 || port > 65535) {
      throw new ConfigError(
        "store",
        `etcd URL member "${part}" is not host[:port] (in "${shown}"); separate members with commas`,
      );
    }
    hosts.push(`${h[1]}:${port}`);
  }
  const params = new Map<string, string>();
  for (const [k, v] of new URLSearchParams(m[4] ?? "")) {
    if (!QUERY_PARAMS.has(k)) {
      throw new ConfigError(
        `store ?${k}`,
        `unknown etcd URL option; accepted: ${[...QUERY_PARAMS].join(", ")}`,
      );
    }
    params.set(k, v);
  }
  if (!tls && (params.has("ca") || params.has("cert") || params.has("key"))) {
    throw new ConfigError("store ?ca", "ca, cert and key need an etcds:// (TLS) URL");
  }
  return { tls, hosts, username, password, params };
}

function readPem(field: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(`store ?${field}`, `cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Watch stream reconnect backoff, doubling up to its cap. */
function watchBackoff(ms: number): NonNullable<IOptions["faultHandling"]>["watchBackoff"] {
  return {
    duration: ms,
    next: () => watchBackoff(Math.min(ETCD_DEFAULTS.watchReconnectMaxMs, ms * 2)),
  } as NonNullable<IOptions["faultHandling"]>["watchBackoff"];
}

/**
 * Opens an etcd store from `etcd://host:port[,host:port…]` (or `etcds://…`
 * for TLS; `user:password@` before the hosts for etcd auth). Query options:
 * `prefix`, `callTimeoutMs`, and for TLS `ca`, `cert`, `key` (PEM file
 * paths). The connection is checked with one read: bad credentials throw a
 * fatal `auth` StoreError at once; an unreachable cluster does not (calls
 * fail with transient errors until it answers).
 */
export async function openEtcdStore(
  url: string,
  opts: OpenEtcdStoreOptions = {},
): Promise<EtcdStore> {
  const u = parseEtcdUrl(url);
  const secrets = u.password ? [u.password, encodeURIComponent(u.password)] : [];
  const callTimeoutMs = intOption(
    "callTimeoutMs",
    opts.callTimeoutMs ?? u.params.get("callTimeoutMs") ?? ETCD_DEFAULTS.callTimeoutMs,
    1,
    600_000,
  );
  const prefix = opts.prefix ?? u.params.get("prefix") ?? ETCD_DEFAULTS.prefix;
  const ca = opts.tls?.ca ?? readPem("ca", u.params.get("ca"));
  const cert = opts.tls?.cert ?? readPem("cert", u.params.get("cert"));
  const key = opts.tls?.key ?? readPem("key", u.params.get("key"));
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError("tls", "a client certificate needs both cert and key");
  }

  let mod: typeof import("etcd3");
  try {
    mod = await import("etcd3");
  } catch (e) {
    throw new StoreError("tenure etcd: the etcd3 package is not installed (npm install etcd3)", {
      transient: false,
      kind: "config",
      cause: e,
    });
  }
  const scheme = u.tls ? "https" : "http";
  const options: IOptions = {
    ...opts.etcdOptions,
    hosts: u.hosts.map((h) => `${scheme}://${h}`),
    grpcOptions: {
      // Reconnect fast after a member restarts; detect dead connections.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 2000,
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5000,
      ...opts.etcdOptions?.grpcOptions,
    },
    faultHandling: memberPolicy({
      hostCount: u.hosts.length,
      isRecoverable: mod.isRecoverableError,
      hedgeMs: Math.min(ETCD_DEFAULTS.memberHedgeMs, callTimeoutMs),
      cooldownMs: ETCD_DEFAULTS.memberCooldownMs,
      watchBackoff: watchBackoff(ETCD_DEFAULTS.watchReconnectMinMs),
    }),
    dialTimeout: callTimeoutMs,
  };
  if (u.tls && (ca || cert)) {
    options.credentials = {
      rootCertificate: ca ?? Buffer.alloc(0),
      ...(key ? { privateKey: key } : {}),
      ...(cert ? { certChain: cert } : {}),
    };
  }
  if (u.username !== undefined) {
    options.auth = {
      username: u.username,
      password: u.password ?? "",
      callOptions: () => ({ deadline: Date.now() + callTimeoutMs }),
    };
  }
  const client: Etcd3 = new mod.Etcd3(options);
  let store: EtcdStore;
  try {
    const so: EtcdStoreOptions = { prefix, callTimeoutMs, ownsClient: true, secrets };
    if (opts.logger) so.logger = opts.logger;
    store = new EtcdStore(client as EtcdClientLike, so);
  } catch (e) {
    client.close();
    throw e;
  }
  try {
    await idempotent(() =>
      client.kv.range(
        { key: Buffer.from(store.leaseKey("_")), count_only: true },
        { deadline: Date.now() + callTimeoutMs },
      ),
    );
  } catch (e) {
    const err = toEtcdStoreError(`open ${redactSecrets(url)}`, e, secrets);
    if (!err.transient) {
      client.close();
      throw err;
    }
    opts.logger?.warn("etcd not reachable yet; calls fail until it answers", {
      err: err.message,
    });
  }
  return store;
}
