/**
 * Worker side of the SQLite faults kill-in-tx and stop-in-tx: a way to catch
 * a leader deterministically *inside* the store's own write transaction, with
 * no test branch in the store. The worker opens the database itself and hands
 * the store a connection whose fenced-value INSERT statement, after it ran
 * (inside `BEGIN IMMEDIATE`, the file's write lock held, the row written but
 * not committed), checks for the arm file: while that file exists, it prints
 * `in-tx` and blocks the thread (as a long synchronous write would), until the
 * harness deletes the file (stop-in-tx: after SIGSTOP … SIGCONT) or kills the
 * process (kill-in-tx). A bound of 30 s keeps a lost harness from leaving it
 * stuck.
 */
import { existsSync } from "node:fs";
import { loadBetterSqlite3, loadNodeSqlite } from "../../src/stores/sqlite/driver.js";
import { SqliteStore, sqlitePathFromUrl } from "../../src/stores/sqlite/index.js";

const HOLD_BOUND_MS = 30_000;

function block(armFile: string, onInTx: () => void): void {
  if (!existsSync(armFile)) return;
  onInTx();
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const until = performance.now() + HOLD_BOUND_MS;
  while (existsSync(armFile) && performance.now() < until) Atomics.wait(cell, 0, 0, 10);
}

/** A method-binding proxy whose statement for `INSERT INTO …_fenced` blocks after `run` while armed. */
function hookDb<T extends object>(db: T, armFile: string, onInTx: () => void): T {
  const wrapStatement = (st: object): object => {
    const proxy: object = new Proxy(st, {
      get(t, prop) {
        const v = Reflect.get(t, prop, t) as unknown;
        if (typeof v !== "function") return v;
        if (prop === "run") {
          return (...a: unknown[]) => {
            const r = (v as (...a: unknown[]) => unknown).apply(t, a);
            block(armFile, onInTx);
            return r;
          };
        }
        // better-sqlite3's safeIntegers() returns the statement itself.
        return (...a: unknown[]) => {
          const r = (v as (...a: unknown[]) => unknown).apply(t, a);
          return r === t ? proxy : r;
        };
      },
    });
    return proxy;
  };
  return new Proxy(db, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t) as unknown;
      if (typeof v !== "function") return v;
      if (prop === "prepare") {
        return (sql: string) => {
          const st = (v as (s: string) => object).call(t, sql);
          return /^\s*INSERT INTO \w+_fenced\b/.test(sql) ? wrapStatement(st) : st;
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(t);
    },
  });
}

/** The SQLite store of `url` on a connection whose fenced write can be held inside its transaction. */
export async function openHookedSqliteStore(
  url: string,
  armFile: string,
  onInTx: () => void,
): Promise<{ store: SqliteStore; close: () => void }> {
  const path = sqlitePathFromUrl(url);
  const DatabaseSync = await loadNodeSqlite();
  if (DatabaseSync) {
    const db = new DatabaseSync(path);
    return {
      store: new SqliteStore(hookDb(db, armFile, onInTx)),
      close: () => db.close(),
    };
  }
  const Database = await loadBetterSqlite3();
  if ("error" in Database) throw new Error(Database.error);
  const db = new Database(path);
  return { store: new SqliteStore(hookDb(db, armFile, onInTx)), close: () => db.close() };
}
