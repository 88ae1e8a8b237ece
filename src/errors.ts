/**
 * Tenure's error classes: one class per concept, each with a stable `name`, a
 * guard function and a component prefix in its message.
 */

/** Base class of every error Tenure throws on purpose. */
export class TenureError extends Error {
  override name = "TenureError";
}

/**
 * A configuration value is invalid. `field` names it; `detail` states what is
 * accepted (the message is `tenure config: FIELD: DETAIL`).
 */
export class ConfigError extends TenureError {
  override name = "ConfigError";
  readonly field: string;
  readonly detail: string;
  constructor(field: string, detail: string) {
    super(`tenure config: ${field}: ${detail}`);
    this.field = field;
    this.detail = detail;
  }
}

/** Why a store call failed, as far as the store can tell. */
export type StoreErrorKind =
  | "connection" // reset, ended, refused, closed by server or pooler
  | "timeout" // no answer in time
  | "unavailable" // server starting, shutting down, failover in progress, read-only replica
  | "auth" // wrong credentials, permission denied
  | "schema" // lease table or key holds something unexpected
  | "config" // the store was set up wrongly (bad URL, missing driver)
  | "closed" // the store was closed by this process
  | "unknown";

/**
 * A store operation failed. `transient` says whether retrying (with reconnect)
 * can succeed; transient errors never demote a leader before its deadline.
 */
export class StoreError extends TenureError {
  override name = "StoreError";
  readonly transient: boolean;
  readonly kind: StoreErrorKind;
  /** The driver's own error code where it has one (`ECONNRESET`, `57P01`, `READONLY`…). */
  readonly code: string | undefined;
  constructor(
    message: string,
    opts: { transient: boolean; kind: StoreErrorKind; code?: string | undefined; cause?: unknown },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.transient = opts.transient;
    this.kind = opts.kind;
    this.code = opts.code;
  }
}

/** A write was fenced off: the term that attempted it no longer holds the lease. */
export class FencedError extends TenureError {
  override name = "FencedError";
  readonly lease: string;
  readonly token: bigint;
  readonly currentToken: bigint | null;
  constructor(lease: string, token: bigint, currentToken: bigint | null) {
    super(
      `tenure fence: lease "${lease}" token ${token} is stale` +
        (currentToken === null ? " (lease not held)" : ` (current token ${currentToken})`),
    );
    this.lease = lease;
    this.token = token;
    this.currentToken = currentToken;
  }
}

/** An operation needed leadership but the caller's term has ended. */
export class NotLeaderError extends TenureError {
  override name = "NotLeaderError";
  constructor(message: string) {
    super(`tenure: ${message}`);
  }
}

/**
 * A call made in the wrong order for the object's lifecycle: a caller
 * mistake, not a store failure (e.g. `start()` after `stop()`).
 */
export class LifecycleError extends TenureError {
  override name = "LifecycleError";
  constructor(component: string, message: string) {
    super(`tenure ${component}: ${message}`);
  }
}

/** A bounded wait ran out. */
export class TimeoutError extends TenureError {
  override name = "TimeoutError";
}

export const isTenureError = (e: unknown): e is TenureError => e instanceof TenureError;
export const isConfigError = (e: unknown): e is ConfigError => e instanceof ConfigError;
export const isStoreError = (e: unknown): e is StoreError => e instanceof StoreError;
export const isFencedError = (e: unknown): e is FencedError => e instanceof FencedError;
export const isNotLeaderError = (e: unknown): e is NotLeaderError => e instanceof NotLeaderError;
export const isLifecycleError = (e: unknown): e is LifecycleError => e instanceof LifecycleError;
export const isTimeoutError = (e: unknown): e is TimeoutError => e instanceof TimeoutError;

/** A transient store error: retrying after a reconnect may succeed. */
export function isTransient(e: unknown): boolean {
  return e instanceof StoreError && e.transient;
}

/** Error message text, whatever was thrown. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** `e` itself when it is an Error, else an Error carrying its text (for events and logs). */
export function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(errorMessage(e));
}

/** Why a term ended. */
export type DemotionReason = "lost" | "expired" | "resigned" | "stopped";

/**
 * The `reason` of a term's AbortSignal once the term ends: `reason` says why
 * (`lost`: another holder took the lease; `expired`: the trust window ran out
 * before a renewal was confirmed; `resigned`: this process gave it up;
 * `stopped`: this process is shutting down).
 */
export class TermEndedError extends TenureError {
  override name = "TermEndedError";
  readonly reason: DemotionReason;
  readonly lease: string;
  readonly token: bigint;
  constructor(lease: string, token: bigint, reason: DemotionReason) {
    super(`tenure: term ${token} of lease "${lease}" ended: ${reason}`);
    this.reason = reason;
    this.lease = lease;
    this.token = token;
  }
}

export const isTermEndedError = (e: unknown): e is TermEndedError => e instanceof TermEndedError;
