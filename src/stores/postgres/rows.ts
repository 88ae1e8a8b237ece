/** Reading lease rows and tokens as PostgreSQL returns them; writing text[] parameters. */
import { ConfigError } from "../../errors.js";
import type { LeaseInfo } from "../../store/types.js";
import { schemaError } from "../common/errors.js";
import type { PgRow } from "./adapters.js";

/** Largest PostgreSQL bigint: no token can follow it. */
export const PG_MAX_TOKEN = 9_223_372_036_854_775_807n;

/** A token read from the store: a positive bigint, else a schema error naming `what`. */
export function parseToken(v: unknown, op: string, what: string): bigint {
  if (typeof v !== "string" || !/^[1-9][0-9]{0,18}$/.test(v) || BigInt(v) > PG_MAX_TOKEN) {
    throw schemaError(
      "postgres",
      op,
      `${what}: token ${JSON.stringify(v)} is not a positive bigint`,
    );
  }
  return BigInt(v);
}

/** What is wrong with a lease row, or null when it is a valid live lease. */
function rowProblem(r: PgRow): string | null {
  const ms = typeof r.ms === "string" ? Number(r.ms) : r.ms;
  if (typeof r.holder !== "string") return `holder ${JSON.stringify(r.holder)} is not text`;
  if (typeof ms !== "number" || Number.isNaN(ms)) return "expires_at is not a time";
  if (!Number.isFinite(ms)) return "expires_at is infinity (a lease must expire)";
  return null;
}

/** The live lease a row describes, else a schema error. */
export function parseInfo(r: PgRow, op: string, name: string): LeaseInfo {
  const row = `row ${JSON.stringify(name)}`;
  const problem = rowProblem(r);
  if (problem) throw schemaError("postgres", op, `${row}: ${problem}`);
  return {
    name,
    holder: r.holder as string,
    token: parseToken(r.token, op, row),
    expiresInMs: Math.max(0, Math.floor(Number(r.ms))),
  };
}

/** PostgreSQL holds tokens as bigint: a larger one cannot be a term of this store. */
export function checkPgToken(token: bigint, field: string): void {
  if (token > PG_MAX_TOKEN) {
    throw new ConfigError(
      field,
      `must be at most ${PG_MAX_TOKEN} (PostgreSQL bigint), got ${token}`,
    );
  }
}

/** A text[] literal: every element quoted, `"` and `\` escaped. */
export function pgArray(items: readonly string[]): string {
  return `{${items.map(pgQuote).join(",")}}`;
}

/** One element of a text[] literal: quoted, `"` and `\` escaped (most need no escaping). */
export function pgQuote(x: string): string {
  if (!x.includes('"') && !x.includes("\\")) return `"${x}"`;
  return `"${x.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
