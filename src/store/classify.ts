import { StoreError, type StoreErrorKind } from "../errors.js";
import { redactSecrets } from "../redact.js";

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
  const clean = redactSecrets(msg);
  // Keep the cause only when it cannot carry a credential.
  return new StoreError(`tenure ${backend}: ${op} failed: ${clean}`, {
    ...c,
    code,
    cause: clean === msg ? e : undefined,
  });
}

export {
  redactSecrets,
  redactUrl,
  registerUrlSecrets,
  SECRET_PARAM,
  scrubSecrets,
  urlSecrets,
} from "../redact.js";
