/**
 * The two SQLite drivers the store runs on, behind one small interface:
 * Node's built-in `node:sqlite` (Node 22.13 and later: no native build, no
 * optional dependency) and better-sqlite3 (Node 20, or by choice).
 */

/** A prepared statement; integers are read as bigints. */
export interface SqliteStatement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

/** What the store needs from a database connection. */
export interface SqliteDb {
  /** Which driver: `node:sqlite` or `better-sqlite3`. */
  readonly driver: SqliteDriverName;
  /** The file path (`:memory:` for an in-memory database). */
  readonly name: string;
  readonly memory: boolean;
  readonly readonly: boolean;
  exec(sql: string): void;
  /** Runs `PRAGMA sql` and returns the first column of its first row. */
  pragma(sql: string): unknown;
  prepare(sql: string): SqliteStatement;
  /** Runs `fn` inside `BEGIN IMMEDIATE` (or `BEGIN DEFERRED`), committing or rolling back. */
  transaction<T>(mode: "immediate" | "deferred", fn: () => T): T;
  close(): void;
}

export type SqliteDriverName = "node:sqlite" | "better-sqlite3";

/** The driver names a `sqlite:` URL's `?driver=` and the `driver` option accept. */
export const SQLITE_DRIVERS: readonly SqliteDriverName[] = Object.freeze([
  "node:sqlite",
  "better-sqlite3",
]);

// ------------------------------------------------------------ better-sqlite3

type BetterDatabase = import("better-sqlite3").Database;
/** The better-sqlite3 module's default export (the `Database` constructor). */
export type BetterSqlite3 = typeof import("better-sqlite3");

/** Wraps an open better-sqlite3 `Database`. */
export function fromBetterSqlite3(db: BetterDatabase): SqliteDb {
  return {
    driver: "better-sqlite3",
    get name() {
      return db.name;
    },
    get memory() {
      return db.memory;
    },
    get readonly() {
      return db.readonly;
    },
    exec: (sql) => {
      db.exec(sql);
    },
    pragma: (sql) => db.pragma(sql, { simple: true }),
    prepare: (sql) => {
      const s = db.prepare(sql).safeIntegers(true);
      return {
        run: (...p) => s.run(...p),
        get: (...p) => s.get(...p),
        all: (...p) => s.all(...p),
      };
    },
    transaction: (mode, fn) => {
      const tx = db.transaction(fn);
      return mode === "immediate" ? tx.immediate() : tx.deferred();
    },
    close: () => {
      db.close();
    },
  };
}

/** True when `x` looks like an open better-sqlite3 `Database`. */
export function isBetterSqlite3Db(x: unknown): x is BetterDatabase {
  const o = x as Record<string, unknown> | null;
  return !!o && typeof o.pragma === "function" && typeof o.transaction === "function";
}

// --------------------------------------------------------------- node:sqlite

/** The part of `node:sqlite`'s `StatementSync` used here (typed locally: @types/node 20 lacks it). */
interface NodeStatementSync {
  run(...p: unknown[]): unknown;
  get(...p: unknown[]): unknown;
  all(...p: unknown[]): unknown[];
  setReadBigInts(on: boolean): void;
}

/** The part of `node:sqlite`'s `DatabaseSync` used here. */
export interface NodeDatabaseSync {
  exec(sql: string): void;
  prepare(sql: string): NodeStatementSync;
  close(): void;
  readonly isOpen?: boolean;
}

/** The `node:sqlite` module's `DatabaseSync` constructor. */
export type NodeDatabaseSyncCtor = new (
  path: string,
  opts?: { readOnly?: boolean },
) => NodeDatabaseSync;

/** SQLite primary result codes, for node:sqlite errors (which carry only the number). */
const RESULT_CODES: Record<number, string> = {
  1: "SQLITE_ERROR",
  3: "SQLITE_PERM",
  5: "SQLITE_BUSY",
  6: "SQLITE_LOCKED",
  8: "SQLITE_READONLY",
  10: "SQLITE_IOERR",
  11: "SQLITE_CORRUPT",
  13: "SQLITE_FULL",
  14: "SQLITE_CANTOPEN",
  15: "SQLITE_PROTOCOL",
  17: "SQLITE_SCHEMA",
  19: "SQLITE_CONSTRAINT",
  20: "SQLITE_MISMATCH",
  26: "SQLITE_NOTADB",
};

/**
 * A node:sqlite error with better-sqlite3's `code` (`SQLITE_BUSY` …), so one
 * classification table serves both drivers.
 */
export function normalizeNodeSqliteError(e: unknown): unknown {
  const o = e as { errcode?: unknown; code?: unknown; message?: unknown } | null;
  if (!o || typeof o.errcode !== "number") return e;
  const name = RESULT_CODES[o.errcode & 0xff];
  if (!name) return e;
  const err = new Error(String(o.message), { cause: e }) as Error & { code: string };
  err.code = name;
  return err;
}

function guarded<A extends unknown[], R>(fn: (...a: A) => R): (...a: A) => R {
  return (...a) => {
    try {
      return fn(...a);
    } catch (e) {
      throw normalizeNodeSqliteError(e);
    }
  };
}

/** Wraps an open node:sqlite `DatabaseSync`. */
export function fromNodeSqlite(db: NodeDatabaseSync, path: string, readOnly = false): SqliteDb {
  let depth = 0;
  return {
    driver: "node:sqlite",
    name: path,
    memory: path === ":memory:" || path === "",
    readonly: readOnly,
    exec: guarded((sql: string) => db.exec(sql)),
    pragma: guarded((sql: string) => {
      const row = db.prepare(`PRAGMA ${sql}`).get() as Record<string, unknown> | undefined;
      return row ? Object.values(row)[0] : undefined;
    }),
    prepare: guarded((sql: string): SqliteStatement => {
      const s = db.prepare(sql);
      s.setReadBigInts(true);
      return {
        run: guarded((...p: unknown[]) => s.run(...p)),
        get: guarded((...p: unknown[]) => s.get(...p)),
        all: guarded((...p: unknown[]) => s.all(...p)),
      };
    }),
    transaction<T>(mode: "immediate" | "deferred", fn: () => T): T {
      if (depth > 0) return fn(); // nested: part of the outer transaction
      try {
        db.exec(mode === "immediate" ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED");
      } catch (e) {
        throw normalizeNodeSqliteError(e);
      }
      depth += 1;
      try {
        const out = fn();
        db.exec("COMMIT");
        return out;
      } catch (e) {
        try {
          db.exec("ROLLBACK");
        } catch {
          // no transaction left to roll back (SQLite rolled it back itself)
        }
        throw normalizeNodeSqliteError(e);
      } finally {
        depth -= 1;
      }
    },
    close: guarded(() => db.close()),
  };
}

/** True when `x` looks like an open node:sqlite `DatabaseSync`. */
export function isNodeSqliteDb(x: unknown): x is NodeDatabaseSync {
  const o = x as Record<string, unknown> | null;
  return (
    !!o &&
    typeof o.prepare === "function" &&
    typeof o.exec === "function" &&
    typeof o.pragma !== "function"
  );
}

/** `node:sqlite`'s DatabaseSync, or null where this Node has none (before 22.13 without a flag). */
export async function loadNodeSqlite(): Promise<NodeDatabaseSyncCtor | null> {
  const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
  if (major < 22 || (major === 22 && minor < 13)) return null;
  // Node 22 and 24 print "SQLite is an experimental feature" once on load: not
  // the user's concern here (the API used is stable in practice and tested).
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === "string" ? warning : warning.message;
    const type = typeof rest[0] === "string" ? rest[0] : (rest[0] as { type?: string })?.type;
    if (type === "ExperimentalWarning" && /sqlite/i.test(text)) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    const spec = "node:sqlite";
    const m = (await import(spec)) as { DatabaseSync?: NodeDatabaseSyncCtor };
    return m.DatabaseSync ?? null;
  } catch {
    return null;
  } finally {
    process.emitWarning = emit;
  }
}

/** The better-sqlite3 constructor, or the reason it cannot be used on this Node. */
export async function loadBetterSqlite3(): Promise<BetterSqlite3 | { error: string }> {
  try {
    return (await import("better-sqlite3")).default;
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}
