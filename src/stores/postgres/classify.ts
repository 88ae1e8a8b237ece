import type { StoreErrorKind } from "../../errors.js";

type Class = { transient: boolean; kind: StoreErrorKind };

const T = (kind: StoreErrorKind): Class => ({ transient: true, kind });
const F = (kind: StoreErrorKind): Class => ({ transient: false, kind });

/** SQLSTATE → class, for the codes whose meaning is clear. */
const SQLSTATES: Record<string, Class> = {
  "57P01": T("connection"), // admin_shutdown: pg_terminate_backend, fast shutdown
  "57P02": T("unavailable"), // crash_shutdown
  "57P03": T("unavailable"), // cannot_connect_now: starting up, recovery
  "57P05": T("connection"), // idle_session_timeout
  "57014": T("timeout"), // query_canceled (statement_timeout, cancel request)
  "55P03": T("timeout"), // lock_not_available (lock_timeout)
  "53300": T("unavailable"), // too_many_connections
  "53000": T("unavailable"), // insufficient_resources
  "53100": T("unavailable"), // disk_full
  "53200": T("unavailable"), // out_of_memory
  "40001": T("unavailable"), // serialization_failure
  "40P01": T("unavailable"), // deadlock_detected
  "25006": T("unavailable"), // read_only_sql_transaction: connected to a standby after failover
  "28P01": F("auth"), // invalid_password
  "28000": F("auth"), // invalid_authorization_specification (no such role, pg_hba reject)
  "42501": F("auth"), // insufficient_privilege
  "3D000": F("config"), // the database does not exist
  "42P01": F("schema"), // undefined_table
  "42703": F("schema"), // undefined_column
  "42804": F("schema"), // datatype_mismatch
  "42883": F("schema"), // undefined_function (a column of the wrong type)
  "3F000": F("schema"), // invalid_schema_name
  "22P02": F("schema"), // invalid_text_representation
};

/** Driver (pg, postgres.js) and pooler conditions, matched on code or message. */
const DRIVER_CODES: Record<string, Class> = {
  CONNECTION_ENDED: T("connection"),
  CONNECTION_CLOSED: T("connection"),
  CONNECT_TIMEOUT: T("timeout"),
  CONNECTION_DESTROYED: F("closed"),
};

const PGBOUNCER_AUTH = /authentication failed|no such user|password authentication/i;
const TRANSIENT_MESSAGES: Array<[RegExp, StoreErrorKind]> = [
  [/Query read timeout|timeout exceeded when trying to connect|connection timeout/i, "timeout"],
  [/query_wait_timeout|server_login_retry|client_login_timeout/i, "timeout"],
  [/Connection terminated|server conn crashed|server closed the connection/i, "connection"],
  [/cannot connect to server|pgbouncer cannot connect|server shutting down/i, "unavailable"],
  [/no more connections allowed|database .* is not available|pooler error/i, "unavailable"],
];

/** Classifies a `pg` / postgres.js / PgBouncer error; null leaves it to the generic socket table. */
export function classifyPostgres(e: unknown, code: string | undefined): Class | null {
  const msg = e instanceof Error ? e.message : String(e);
  if (code) {
    const byState = SQLSTATES[code];
    if (byState) return byState;
    const byDriver = DRIVER_CODES[code];
    if (byDriver) return byDriver;
    if (code.startsWith("08")) {
      // connection exceptions; PgBouncer reports its own errors as 08P01
      return PGBOUNCER_AUTH.test(msg) ? F("auth") : T("connection");
    }
    if (code.startsWith("28")) return F("auth");
  }
  if (/Client was closed and is not queryable|Cannot use a pool after calling end/i.test(msg)) {
    return F("closed");
  }
  for (const [re, kind] of TRANSIENT_MESSAGES) if (re.test(msg)) return T(kind);
  return null;
}
