import { StoreError } from "../errors.js";

/**
 * The error of a `*Many` call that did not answer one result per item, or
 * null when it did. `what` names the call with its component, as in
 * `tenure renewer: renewMany`.
 */
export function resultCountError(results: unknown, n: number, what: string): StoreError | null {
  if (Array.isArray(results) && results.length === n) return null;
  return new StoreError(
    `${what} answered ${Array.isArray(results) ? results.length : typeof results} results for ${n} leases`,
    { transient: false, kind: "unknown" },
  );
}
