/**
 * Argument checks of every store operation, the same on every backend: each
 * store calls the check of its operation first, before it looks at its own
 * state (closed or not) or asks its server anything.
 */
import { ConfigError } from "../errors.js";
import { checkInt, MAX_TIMER_MS } from "../limits.js";

/** Lease names: 1–128 characters from `A–Z a–z 0–9 . _ : / -`, starting with a letter or digit. */
export const LEASE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;

export function validateLeaseName(name: unknown, field = "name"): string {
  if (typeof name !== "string" || !LEASE_NAME_PATTERN.test(name)) {
    throw new ConfigError(
      field,
      `must be 1–128 characters of A–Z a–z 0–9 . _ : / - starting with a letter or digit (got ${JSON.stringify(name)})`,
    );
  }
  return name;
}

export function validateHolder(holder: unknown, field = "holderId"): string {
  if (typeof holder !== "string" || holder.length === 0 || holder.length > 255) {
    throw new ConfigError(field, `must be a non-empty string of at most 255 characters`);
  }
  return holder;
}

export function validateTtl(ttlMs: unknown, field = "ttlMs"): number {
  return checkInt(field, ttlMs, 1, MAX_TIMER_MS, " (ms)");
}

/**
 * A fencing token: a bigint, never negative. Stores issue positive tokens; 0
 * is accepted as a token no term ever had (it is simply never current).
 */
export function validateToken(token: unknown, field = "token"): bigint {
  if (typeof token !== "bigint" || token < 0n) {
    throw new ConfigError(
      field,
      `must be a fencing token: a bigint from a term, at least 0 (got ${typeof token === "bigint" ? `${token}n` : String(token)})`,
    );
  }
  return token;
}

/** A term's lease reference `{ name, holder, token }`, as renew and release take it. */
export function validateLeaseRef(
  lease: unknown,
  field = "lease",
  what = "a lease { name, holder, token } from acquire",
): void {
  if (!lease || typeof lease !== "object") throw new ConfigError(field, `must be ${what}`);
  const l = lease as Record<string, unknown>;
  validateLeaseName(l.name, `${field}.name`);
  validateHolder(l.holder, `${field}.holder`);
  validateToken(l.token, `${field}.token`);
}

/** Keys of fenced values: 1–1024 characters. */
export function validateFencedKey(key: unknown, field = "key"): string {
  if (typeof key !== "string" || key.length === 0 || key.length > 1024) {
    throw new ConfigError(field, "must be a non-empty string of at most 1024 characters");
  }
  return key;
}

/** Arguments of `putFenced(lease, key, value, opts)`. */
export function validateFencedPut(
  lease: unknown,
  key: unknown,
  value: unknown,
  opts: unknown,
): void {
  validateLeaseRef(lease, "lease", "a lease or term { name, holder, token }");
  validateFencedKey(key);
  if (typeof value !== "string") throw new ConfigError("value", "must be a string");
  if (opts !== undefined && (opts === null || typeof opts !== "object")) {
    throw new ConfigError("opts", "must be an object { expect? } or left out");
  }
  const expect = (opts as { expect?: unknown } | undefined)?.expect;
  if (expect !== undefined && expect !== null && typeof expect !== "string") {
    throw new ConfigError("opts.expect", "must be a string, null (absent) or left out");
  }
}

/** Arguments of `acquire(name, holder, ttlMs)`. */
export function validateAcquire(name: unknown, holder: unknown, ttlMs: unknown): void {
  validateLeaseName(name);
  validateHolder(holder, "holder");
  validateTtl(ttlMs);
}

/** Arguments of `renew(lease, ttlMs)`. */
export function validateRenew(lease: unknown, ttlMs: unknown): void {
  validateLeaseRef(lease);
  validateTtl(ttlMs);
}

/** Arguments of `getFenced(name, key)`. */
export function validateFencedGet(name: unknown, key: unknown): void {
  validateLeaseName(name);
  validateFencedKey(key);
}

/**
 * The items of `renewMany(items)`: an array of `{ lease, ttlMs }`, each checked
 * as `renew(lease, ttlMs)` checks its arguments (the field names the index).
 */
export function validateRenewItems(items: unknown): void {
  if (!Array.isArray(items)) {
    throw new ConfigError("items", "must be an array of { lease, ttlMs }");
  }
  for (const [i, item] of items.entries()) {
    if (!item || typeof item !== "object") {
      throw new ConfigError(`items[${i}]`, "must be { lease, ttlMs }");
    }
    const it = item as Record<string, unknown>;
    validateLeaseRef(it.lease, `items[${i}].lease`);
    validateTtl(it.ttlMs, `items[${i}].ttlMs`);
  }
}

/** The items of `releaseMany(leases)`: an array of lease refs, each checked as `release(lease)` checks it. */
export function validateReleaseItems(leases: unknown): void {
  if (!Array.isArray(leases)) {
    throw new ConfigError("leases", "must be an array of { name, holder, token }");
  }
  for (const [i, lease] of leases.entries()) validateLeaseRef(lease, `leases[${i}]`);
}

/**
 * The items of `acquireMany(items)`: an array of `{ name, holder, ttlMs }`,
 * each checked as `acquire(name, holder, ttlMs)` checks its arguments (the
 * field names the index).
 */
export function validateAcquireItems(items: unknown): void {
  if (!Array.isArray(items)) {
    throw new ConfigError("items", "must be an array of { name, holder, ttlMs }");
  }
  for (const [i, item] of items.entries()) {
    if (!item || typeof item !== "object") {
      throw new ConfigError(`items[${i}]`, "must be { name, holder, ttlMs }");
    }
    const it = item as Record<string, unknown>;
    validateLeaseName(it.name, `items[${i}].name`);
    validateHolder(it.holder, `items[${i}].holder`);
    validateTtl(it.ttlMs, `items[${i}].ttlMs`);
  }
}

/**
 * Item indexes of a batch in rounds with no lease name twice in one round: the
 * first item of each name in round 0, the second in round 1, and so on. A
 * store whose one round trip cannot change one lease twice sends one round
 * after the other, so each item is judged after the items before it.
 */
export function roundsByName(items: readonly { readonly name: string }[]): number[][] {
  const seen = new Map<string, number>();
  const rounds: number[][] = [];
  for (const [i, it] of items.entries()) {
    const k = seen.get(it.name) ?? 0;
    seen.set(it.name, k + 1);
    if (k === rounds.length) rounds.push([i]);
    else rounds[k]!.push(i);
  }
  return rounds;
}
