import { ConfigError } from "../errors.js";

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
  if (typeof ttlMs !== "number" || !Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > 2_147_483_647) {
    throw new ConfigError(
      field,
      `must be an integer number of milliseconds from 1 to 2147483647 (got ${String(ttlMs)})`,
    );
  }
  return ttlMs;
}
