import { StoreError, type StoreErrorKind } from "../errors.js";

/** Node socket error codes that mean "the connection broke; a reconnect may help". */
export const TRANSIENT_NET_CODES: ReadonlySet<string> = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "ENOTCONN",
  "ESOCKETTIMEDOUT",
]);

/** The `code` property of an error, if it has a string one. */
export function errorCode(e: unknown): string | undefined {
  if (e && typeof e === "object" && "code" in e) {
    const c = (e as { code: unknown }).code;
    if (typeof c === "string") return c;
    if (typeof c === "number") return String(c);
  }
  return undefined;
}

/**
 * Wraps an unknown driver error as a StoreError. `classify` is the backend's
 * own table; the generic socket codes are always transient.
 */
export function toStoreError(
  backend: string,
  op: string,
  e: unknown,
  classify: (
    e: unknown,
    code: string | undefined,
  ) => { transient: boolean; kind: StoreErrorKind } | null,
): StoreError {
  if (e instanceof StoreError) return e;
  const code = errorCode(e);
  const specific = classify(e, code);
  const c =
    specific ??
    (code && TRANSIENT_NET_CODES.has(code)
      ? { transient: true, kind: "connection" as const }
      : { transient: false, kind: "unknown" as const });
  const msg = e instanceof Error ? e.message : String(e);
  return new StoreError(`tenure ${backend}: ${op} failed: ${redactSecrets(msg)}`, {
    ...c,
    code,
    cause: e,
  });
}

/** Removes passwords from anything URL-shaped in a string. */
export function redactSecrets(s: string): string {
  return s.replace(/([a-z][a-z0-9+.-]*:\/\/)([^/@\s:]*):([^/@\s]*)@/gi, "$1$2:***@");
}

/** A URL with its password replaced by `***`, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return redactSecrets(url);
  }
}
