/**
 * A foreign process stuck holding a SQLite file's write lock (fault
 * lock-held): `node sqlite-lock-holder.js FILE` opens the database, takes the
 * write lock with `BEGIN IMMEDIATE` (waiting for it up to 10 s), prints
 * `locked` and holds it until SIGTERM (then ROLLBACK and exit 0) or SIGKILL
 * (the kernel drops the lock).
 */
import { loadBetterSqlite3, loadNodeSqlite } from "../../src/stores/sqlite/driver.js";

const file = process.argv[2];
if (!file) {
  process.stderr.write("usage: sqlite-lock-holder FILE\n");
  process.exit(64);
}
const DatabaseSync = await loadNodeSqlite();
let exec: (sql: string) => void;
let close: () => void;
if (DatabaseSync) {
  const db = new DatabaseSync(file);
  exec = (sql) => db.exec(sql);
  close = () => db.close();
} else {
  const Database = await loadBetterSqlite3();
  if ("error" in Database) throw new Error(Database.error);
  const db = new Database(file);
  exec = (sql) => db.exec(sql);
  close = () => db.close();
}
exec("PRAGMA busy_timeout = 10000");
exec("BEGIN IMMEDIATE");
process.stdout.write("locked\n");
const keep = setInterval(() => {}, 60_000);
process.on("SIGTERM", () => {
  exec("ROLLBACK");
  close();
  clearInterval(keep);
  process.exit(0);
});
