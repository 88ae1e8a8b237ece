import type { StoreErrorKind } from "../../errors.js";

/** How a SQLite error code is classified: transient (busy, I/O) or fatal (schema, permissions…). */
export function classifySqlite(
  _e: unknown,
  code: string | undefined,
): { transient: boolean; kind: StoreErrorKind } | null {
  if (!code?.startsWith("SQLITE_")) return null;
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return { transient: true, kind: "timeout" };
  }
  if (code.startsWith("SQLITE_IOERR") || code === "SQLITE_FULL" || code === "SQLITE_PROTOCOL") {
    return { transient: true, kind: "unavailable" };
  }
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB" || code === "SQLITE_SCHEMA") {
    return { transient: false, kind: "schema" };
  }
  if (code === "SQLITE_ERROR" || code === "SQLITE_MISMATCH" || code === "SQLITE_CONSTRAINT") {
    // "no such table/column", a hand-edited schema, a constraint we do not set up
    return { transient: false, kind: "schema" };
  }
  if (code.startsWith("SQLITE_READONLY") || code.startsWith("SQLITE_PERM")) {
    return { transient: false, kind: "auth" };
  }
  if (code.startsWith("SQLITE_CANTOPEN")) return { transient: false, kind: "config" };
  return { transient: false, kind: "unknown" };
}
