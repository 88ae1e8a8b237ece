import { StoreError, type StoreErrorKind } from "../../errors.js";
import { errorCode, redactSecrets, TRANSIENT_NET_CODES } from "../../store/classify.js";

type Class = { transient: boolean; kind: StoreErrorKind; code?: string };

/** Redis error-reply prefixes that mean "the server cannot serve this right now; retry". */
const UNAVAILABLE = new Set([
  "READONLY", // a replica (e.g. a demoted master after failover)
  "LOADING", // loading the dataset after a restart
  "TRYAGAIN", // cluster resharding
  "CLUSTERDOWN",
  "MASTERDOWN", // replica lost its master (replica-serve-stale-data no)
  "BUSY", // a long script is running
  "NOREPLICAS",
  "MISCONF", // cannot persist; writes refused until fixed
  "OOM",
  "MOVED", // only surfaces when a cluster client gives up following redirects
  "ASK",
]);
const AUTH = new Set(["NOAUTH", "WRONGPASS", "NOPERM"]);
const SCHEMA = new Set(["WRONGTYPE", "TENURE_SCHEMA"]);

/** Messages of ioredis (not the server) that mean the connection is gone or not ready. */
const CONNECTION_MESSAGES = [
  /connection is closed/i,
  /stream isn't writeable/i,
  /socket closed unexpectedly/i,
  /connection (?:was )?(?:lost|reset)/i,
  /reached the max retries per request limit/i,
  /failed to refresh slots cache/i,
  /none of startup nodes is available/i,
];

/**
 * How a Redis (ioredis) error should be treated. Transient: connection loss,
 * timeouts, READONLY/LOADING/TRYAGAIN/CLUSTERDOWN/MASTERDOWN/BUSY; fatal
 * `auth`: NOAUTH/WRONGPASS/NOPERM; fatal `schema`: WRONGTYPE or a key that
 * does not hold what Tenure wrote; fatal `config`: CROSSSLOT (keys of one
 * script in different Cluster slots).
 */
export function classifyRedisError(e: unknown): Class {
  const msg = e instanceof Error ? e.message : String(e);
  const name = e instanceof Error ? e.name : "";
  const code = errorCode(e);
  if (name === "MaxRetriesPerRequestError") {
    return { transient: true, kind: "connection", code: "MAX_RETRIES" };
  }
  if (code && TRANSIENT_NET_CODES.has(code)) return { transient: true, kind: "connection", code };
  if (/command timed out/i.test(msg)) return { transient: true, kind: "timeout", code: "TIMEOUT" };
  if (CONNECTION_MESSAGES.some((re) => re.test(msg))) {
    return { transient: true, kind: "connection", code: code ?? "CONNECTION_CLOSED" };
  }
  // Server error replies start with an upper-case code; inside scripts Redis 6
  // wraps them ("ERR Error running script …: WRONGTYPE …"), so look for the
  // code anywhere as a word too.
  const words = msg.match(/\b[A-Z_]{3,}\b/g) ?? [];
  const head = words[0] === "ERR" && words.length > 1 ? undefined : words[0];
  const scan = head ? [head, ...words] : words;
  for (const w of scan) {
    if (SCHEMA.has(w)) return { transient: false, kind: "schema", code: w };
    if (AUTH.has(w)) return { transient: false, kind: "auth", code: w };
  }
  if (head && UNAVAILABLE.has(head)) return { transient: true, kind: "unavailable", code: head };
  if (head === "CROSSSLOT") return { transient: false, kind: "config", code: head };
  if (/max number of clients reached/i.test(msg)) {
    return { transient: true, kind: "unavailable", code: "MAXCLIENTS" };
  }
  if (/invalid password|without any password configured/i.test(msg)) {
    return { transient: false, kind: "auth", code: "AUTH" };
  }
  return { transient: false, kind: "unknown", ...(code || head ? { code: code ?? head } : {}) };
}

/** Removes known secrets and anything URL-shaped with a password from a message. */
export function scrub(msg: string, secrets: readonly string[]): string {
  let out = redactSecrets(msg);
  for (const s of secrets) if (s.length >= 1) out = out.split(s).join("***");
  return out;
}

/** Wraps a Redis error as a {@link StoreError} with the password scrubbed from its message. */
export function toRedisStoreError(op: string, e: unknown, secrets: readonly string[]): StoreError {
  if (e instanceof StoreError) return e;
  const c = classifyRedisError(e);
  const raw = e instanceof Error ? e.message : String(e);
  let msg = scrub(raw, secrets);
  if (c.kind === "config" && c.code === "CROSSSLOT") {
    msg += ` (in Redis Cluster a fenced key must carry the lease's hash tag: use store.taggedKey(name, suffix))`;
  }
  // Keep the cause only when it cannot carry the secret.
  const cause = raw === msg ? e : undefined;
  return new StoreError(`tenure redis: ${op} failed: ${msg}`, {
    transient: c.transient,
    kind: c.kind,
    code: c.code,
    cause,
  });
}
