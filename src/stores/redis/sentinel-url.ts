/**
 * Parses `redis+sentinel://` URLs: a Redis primary found through Sentinel.
 *
 *   redis+sentinel://[user:password@]host1:port1[,host2:port2…]/MASTERNAME[?options]
 *
 * The hosts are the sentinels (port 26379 when left out); MASTERNAME is the
 * name the sentinels monitor (`sentinel monitor MASTERNAME …`). The user info
 * authenticates to the Redis servers (primary and replicas); the sentinels'
 * own credentials, if they have any, are `?sentinelUsername=` and
 * `?sentinelPassword=`. `?db=N` picks the database. Every other query option
 * is one of `redis://` (see `openRedisStore`).
 */
import { ConfigError } from "../../errors.js";
import { redactUrl } from "../../store/classify.js";

/** Port of a sentinel whose URL host names none. */
export const SENTINEL_DEFAULT_PORT = 26379;

/** Query options only a `redis+sentinel://` URL takes. */
export const SENTINEL_PARAMS = Object.freeze(["db", "sentinelUsername", "sentinelPassword"]);

/** What a `redis+sentinel://` URL names. */
export interface SentinelTarget {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  /** The monitored master's name. */
  readonly name: string;
  readonly db: number;
  readonly username?: string;
  readonly password?: string;
  readonly sentinelUsername?: string;
  readonly sentinelPassword?: string;
  /** The remaining query options (those of `redis://`), undecoded values decoded. */
  readonly params: readonly (readonly [string, string])[];
}

function decode(field: string, v: string, shown: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw new ConfigError(field, `is not validly percent-encoded in "${shown}"`);
  }
}

/** True for URLs of the Sentinel scheme (any case). */
export function isSentinelUrl(url: string): boolean {
  return /^redis\+sentinel:/i.test(url.trim());
}

/**
 * Parses a `redis+sentinel://` URL. Throws a ConfigError naming the part that
 * is wrong and what is accepted; credentials never appear in its message.
 */
export function parseSentinelUrl(url: string): SentinelTarget {
  const shown = redactUrl(url);
  const form = "redis+sentinel://[user:password@]host:port[,host:port…]/MASTERNAME[?db=N&…]";
  const m = /^redis\+sentinel:\/\/([^/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/i.exec(url.trim());
  if (!m) throw new ConfigError("store", `not a valid Sentinel URL "${shown}"; expected ${form}`);
  const authority = m[1]!;
  const at = authority.lastIndexOf("@");
  const info = at >= 0 ? authority.slice(0, at) : "";
  const hostList = at >= 0 ? authority.slice(at + 1) : authority;
  let username: string | undefined;
  let password: string | undefined;
  if (at >= 0) {
    const c = info.indexOf(":");
    const u = c >= 0 ? info.slice(0, c) : info;
    const p = c >= 0 ? info.slice(c + 1) : "";
    if (c < 0) {
      // `redis://secret@host` is taken as a password by Redis clients; do the same.
      password = decode("store password", u, shown) || undefined;
    } else {
      username = decode("store user", u, shown) || undefined;
      password = decode("store password", p, shown) || undefined;
    }
  }
  if (hostList === "") {
    throw new ConfigError(
      "store",
      `Sentinel URL names no sentinel host: "${shown}"; expected ${form}`,
    );
  }
  const sentinels = hostList.split(",").map((h) => {
    const hp = /^(\[[0-9a-f:.]+\]|[^:[\]\s]+)(?::(\d{1,5}))?$/i.exec(h);
    const port = hp?.[2] !== undefined ? Number(hp[2]) : SENTINEL_DEFAULT_PORT;
    if (!hp || port < 1 || port > 65535) {
      throw new ConfigError(
        "store",
        `sentinel "${h}" in "${shown}" is not host[:port] (port 1–65535, default ${SENTINEL_DEFAULT_PORT})`,
      );
    }
    return { host: hp[1]!.replace(/^\[(.*)\]$/, "$1"), port };
  });
  const path = m[2] ?? "";
  const parts = path.split("/").filter((p, i) => p !== "" || i === 0);
  const name = decode("store master name", parts[0] ?? "", shown);
  if (name === "" || parts.length > 2 || !/^[!-~]{1,255}$/.test(name)) {
    throw new ConfigError(
      "store",
      `the path of a Sentinel URL is the master name the sentinels monitor, e.g. /mymaster (got "${shown}")`,
    );
  }
  let db = 0;
  const dbFrom = (field: string, v: string) => {
    if (!/^\d{1,2}$/.test(v)) {
      throw new ConfigError(field, `must be a database number from 0 to 99 (got ${v})`);
    }
    db = Number(v);
  };
  if (parts[1] !== undefined) dbFrom("store /db", parts[1]);
  let sentinelUsername: string | undefined;
  let sentinelPassword: string | undefined;
  const params: [string, string][] = [];
  for (const pair of (m[3] ?? "").split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const k = decode("store query", eq >= 0 ? pair.slice(0, eq) : pair, shown);
    const v = decode(`store ?${k}`, eq >= 0 ? pair.slice(eq + 1).replace(/\+/g, " ") : "", shown);
    if (k === "db") dbFrom("store ?db", v);
    else if (k === "sentinelUsername") sentinelUsername = v || undefined;
    else if (k === "sentinelPassword") sentinelPassword = v || undefined;
    else params.push([k, v]);
  }
  return {
    sentinels,
    name,
    db,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(sentinelUsername !== undefined ? { sentinelUsername } : {}),
    ...(sentinelPassword !== undefined ? { sentinelPassword } : {}),
    params,
  };
}
