import { StoreError, type StoreErrorKind } from "../../errors.js";
import { errorCode, redactSecrets, TRANSIENT_NET_CODES } from "../../store/classify.js";

type Class = { transient: boolean; kind: StoreErrorKind; code?: string };

/** Messages that mean the connection to a member is gone or never came up. */
const CONNECTION_MESSAGES = [
  /ECONNREFUSED|ECONNRESET|EPIPE|EHOSTUNREACH|ENETUNREACH/,
  /no connection established/i,
  /connection (?:dropped|closed|refused|reset)/i,
  /failed to connect/i,
  /socket (?:closed|hang up)/i,
  /read ECONN|write EPIPE/i,
];

/** etcd server messages that mean "no quorum or leader right now; retry". */
const UNAVAILABLE_MESSAGES = [
  /etcdserver: (?:no leader|leader changed|request timed out|server stopped|too many requests|not capable|unhealthy cluster)/i,
  /etcdserver: request timed out, possibly due to (?:previous leader failure|connection lost)/i,
  /mvcc: database space exceeded/i,
];

/** The gRPC status name in an etcd3 error message (`14 UNAVAILABLE: …` → `UNAVAILABLE`). */
function grpcStatus(msg: string): string | undefined {
  return /(?:^|:\s)\d{1,2} ([A-Z_]{4,}):/.exec(msg)?.[1];
}

/**
 * How an etcd3 (gRPC) error should be treated. Transient: unavailable members
 * (refused, dropped, no leader, leader changed, server stopped), deadlines,
 * cancelled or internal stream errors, an open circuit breaker, a lease that
 * vanished between grant and use; fatal `auth`: bad credentials, permission
 * denied, unauthenticated; fatal `closed`: the client was closed; anything
 * else (invalid argument…) fatal `unknown`.
 */
export function classifyEtcdError(e: unknown): Class {
  const msg = e instanceof Error ? e.message : String(e);
  const ctor =
    e && typeof e === "object" && (e as object).constructor ? (e as object).constructor.name : "";
  const status = grpcStatus(msg);
  const code = errorCode(e);
  if (code && TRANSIENT_NET_CODES.has(code)) return { transient: true, kind: "connection", code };
  switch (ctor) {
    case "EtcdAuthenticationFailedError":
    case "EtcdPermissionDeniedError":
    case "EtcdInvalidAuthTokenError":
    case "GRPCUnauthenticatedError":
      return { transient: false, kind: "auth", code: status ?? "AUTH" };
    case "ClientClosedError":
      return { transient: false, kind: "closed", code: "CLOSED" };
    case "BrokenCircuitError":
      return { transient: true, kind: "unavailable", code: "CIRCUIT_OPEN" };
    case "GRPCDeadlineExceededError":
      return { transient: true, kind: "timeout", code: "DEADLINE_EXCEEDED" };
    case "EtcdLeaseInvalidError":
      // The lease expired between grant and use (a stall): a retry grants a new one.
      return { transient: true, kind: "unavailable", code: "LEASE_NOT_FOUND" };
  }
  if (/authentication failed|permission denied|invalid auth token|user name not found/i.test(msg)) {
    return { transient: false, kind: "auth", code: status ?? "AUTH" };
  }
  if (status === "DEADLINE_EXCEEDED" || /deadline exceeded/i.test(msg)) {
    return { transient: true, kind: "timeout", code: "DEADLINE_EXCEEDED" };
  }
  if (UNAVAILABLE_MESSAGES.some((re) => re.test(msg))) {
    return { transient: true, kind: "unavailable", code: status ?? "UNAVAILABLE" };
  }
  if (CONNECTION_MESSAGES.some((re) => re.test(msg))) {
    return { transient: true, kind: "connection", code: status ?? "UNAVAILABLE" };
  }
  if (
    ctor === "GRPCUnavailableError" ||
    ctor === "GRPCCancelledError" ||
    ctor === "GRPCInternalError" ||
    ctor === "GRPCAbortedError" ||
    ctor === "GRPCResourceExhastedError" ||
    status === "UNAVAILABLE" ||
    status === "CANCELLED" ||
    status === "INTERNAL" ||
    status === "ABORTED" ||
    status === "RESOURCE_EXHAUSTED"
  ) {
    const kind =
      status === "UNAVAILABLE" || ctor === "GRPCUnavailableError" ? "unavailable" : "connection";
    return {
      transient: true,
      kind,
      code: status ?? ctor.replace(/^GRPC|Error$/g, "").toUpperCase(),
    };
  }
  if (/client was already closed/i.test(msg)) {
    return { transient: false, kind: "closed", code: "CLOSED" };
  }
  return { transient: false, kind: "unknown", ...(status || code ? { code: status ?? code } : {}) };
}

/** Wraps an etcd error as a {@link StoreError}, with known secrets scrubbed from its message. */
export function toEtcdStoreError(
  op: string,
  e: unknown,
  secrets: readonly string[] = [],
): StoreError {
  if (e instanceof StoreError) return e;
  const c = classifyEtcdError(e);
  const raw = e instanceof Error ? e.message : String(e);
  let msg = redactSecrets(raw);
  for (const s of secrets) if (s.length > 0) msg = msg.split(s).join("***");
  return new StoreError(`tenure etcd: ${op} failed: ${msg}`, {
    transient: c.transient,
    kind: c.kind,
    code: c.code,
    cause: raw === msg ? e : undefined,
  });
}
