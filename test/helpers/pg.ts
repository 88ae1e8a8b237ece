import { execFile } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./ports.js";
import { SERVICES } from "./services.js";

const run = promisify(execFile);

/** A short-lived admin connection to the test database. */
export async function withAdmin<T>(
  fn: (c: pg.Client) => Promise<T>,
  url = SERVICES.postgres,
): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: "tenure-test-admin" });
  c.on("error", () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** Whether the test database answers (a suite that needs it is skipped otherwise). */
export async function pgAnswers(): Promise<boolean> {
  try {
    await withAdmin(async (c) => c.query("SELECT 1"));
    return true;
  } catch {
    return false;
  }
}

/** Drops a test's table and its `_fenced` companion, if they are there (errors ignored). */
export async function dropTestTable(table: string): Promise<void> {
  await withAdmin(async (c) => {
    await c.query(`DROP TABLE IF EXISTS "${table}", "${table}_fenced"`);
  }).catch(() => {});
}

/** Terminates every backend whose application_name is `app`; returns how many. */
export async function terminateApp(app: string, url = SERVICES.postgres): Promise<number> {
  return withAdmin(async (c) => {
    const r = await c.query(
      "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
      [app],
    );
    return r.rows.filter((x) => x.ok).length;
  }, url);
}

/** A URL with `application_name` (and other params) added. */
export function withParams(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

let seq = 0;
/** A unique application_name for one store. */
export function appName(prefix = "tenure-test"): string {
  return `${prefix}-${process.pid}-${++seq}`;
}

const BIN = process.env.TENURE_TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";

/** A throwaway PostgreSQL cluster (initdb + pg_ctl as the postgres user) on a free loopback port. */
export interface ThrowawayCluster {
  url: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startThrowawayCluster(): Promise<ThrowawayCluster> {
  const dir = mkdtempSync(join(tmpdir(), "tenure-pg-"));
  const data = join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(dir, Number((await run("id", ["-u", "postgres"])).stdout.trim()), -1);
  const pgRun = (cmd: string, args: string[]) =>
    asRoot
      ? run("runuser", ["-u", "postgres", "--", join(BIN, cmd), ...args], { cwd: dir })
      : run(join(BIN, cmd), args, { cwd: dir });
  const port = await freePort();
  await pgRun("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c synchronous_commit=off`;
  await pgRun("pg_ctl", [
    "-D",
    data,
    "-o",
    opts,
    "-l",
    join(dir, "log"),
    "-w",
    "-t",
    "20",
    "start",
  ]);
  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart() {
      await pgRun("pg_ctl", [
        "-D",
        data,
        "-l",
        join(dir, "log"),
        "-m",
        "fast",
        "-w",
        "-t",
        "20",
        "restart",
      ]);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await pgRun("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
