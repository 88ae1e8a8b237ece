/**
 * SQLite lease store (`sqlite:PATH`): the embedded default. Many processes on
 * one host share one database file (WAL mode, `busy_timeout`, `BEGIN
 * IMMEDIATE` around every compare-and-set).
 *
 * Expiry is judged by the host's monotonic clock, never by wall time: Node's
 * `process.hrtime.bigint()` reads CLOCK_MONOTONIC, which on Linux is one clock
 * for every process of the host (time since boot, not counting suspend), so
 * expiry times written by one process mean the same to every other and do not
 * move when NTP or an operator steps the wall clock. A time namespace's offset
 * is taken off and a faked monotonic clock is refused (./clock.ts). Each row
 * also records the kernel's boot id (/proc/sys/kernel/random/boot_id): a row
 * written before a reboot is treated as expired, because the monotonic clock
 * restarts at boot.
 */
import { resolve } from "node:path";
import { ConfigError } from "../../errors.js";
import type { OpenStoreOptions } from "../../store/types.js";
import {
  loadBetterSqlite3,
  loadNodeSqlite,
  SQLITE_DRIVERS,
  type SqliteDriverName,
} from "./driver.js";
import { SqliteStore, type SqliteStoreOptions } from "./store.js";

export {
  type NodeDatabaseSync,
  type NodeDatabaseSyncCtor,
  SQLITE_DRIVERS,
  type SqliteDriverName,
} from "./driver.js";
export {
  hostBootId,
  hostMonotonicMs,
  SQLITE_DEFAULT_BUSY_TIMEOUT_MS,
  SQLITE_DEFAULT_TABLE,
  SqliteStore,
  type SqliteStoreOptions,
} from "./store.js";

/**
 * The file path in a `sqlite:` URL: `sqlite:./rel/path.db` (relative to the
 * working directory), `sqlite:/abs/path.db`, `sqlite:///abs/path.db`, or
 * `sqlite::memory:` (one process only; for tests).
 */
export function sqlitePathFromUrl(url: string): string {
  const m = /^sqlite:(.*)$/is.exec(url.trim());
  let rest = m?.[1] ?? "";
  if (rest.startsWith("//")) {
    rest = rest.slice(2);
    if (!rest.startsWith("/")) {
      throw new ConfigError(
        "store",
        `"${url}" has a host part; use sqlite:./relative/path.db, sqlite:/absolute/path.db or sqlite:///absolute/path.db`,
      );
    }
  }
  if (rest === ":memory:") return rest;
  if (rest === "" || rest.includes("\0") || rest.endsWith("/")) {
    throw new ConfigError(
      "store",
      `"${url}" does not name a file; use sqlite:./relative/path.db, sqlite:/absolute/path.db or sqlite:///absolute/path.db`,
    );
  }
  return resolve(rest);
}

/**
 * Opens a SQLite lease store from a `sqlite:PATH` URL, creating the file and
 * its folder. The driver is Node's built-in `node:sqlite` where this Node has
 * it (22.13 and later), else better-sqlite3 (`npm install better-sqlite3`);
 * `?driver=better-sqlite3` or `?driver=node:sqlite` at the end of the URL, or
 * the `driver` option, chooses.
 */
export async function openSqliteStore(
  url: string,
  _opts: OpenStoreOptions = {},
  storeOpts: SqliteStoreOptions & { driver?: SqliteDriverName } = {},
): Promise<SqliteStore> {
  const q = /\?driver=([^&#]*)$/.exec(url);
  const fromUrl = q ? decodeURIComponent(q[1]!) : undefined;
  const { driver: fromOpts, ...given } = storeOpts;
  // Doorbell trouble (./notify.ts) goes to the store's logger.
  const rest: SqliteStoreOptions = { logger: _opts.logger, ...given };
  const driver = fromOpts ?? fromUrl;
  if (driver !== undefined && !(SQLITE_DRIVERS as readonly string[]).includes(driver)) {
    throw new ConfigError(
      "store ?driver",
      `must be ${SQLITE_DRIVERS.join(" or ")} (got ${JSON.stringify(driver)})`,
    );
  }
  const path = sqlitePathFromUrl(q ? url.slice(0, q.index) : url);
  if (driver !== "better-sqlite3") {
    const DatabaseSync = await loadNodeSqlite();
    if (DatabaseSync) return new SqliteStore(path, { ...rest, DatabaseSync });
    if (driver === "node:sqlite") {
      throw new ConfigError(
        "store ?driver",
        `node:sqlite needs Node 22.13 or later (this is ${process.versions.node})`,
      );
    }
  }
  const Database = await loadBetterSqlite3();
  if ("error" in Database) {
    throw new ConfigError(
      "store",
      `the sqlite store needs Node 22.13 or later (node:sqlite) or the better-sqlite3 package (npm install better-sqlite3) on Node ${process.versions.node}: ${Database.error}`,
    );
  }
  return new SqliteStore(path, { ...rest, Database });
}
