/**
 * A throwaway PostgreSQL primary with an asynchronous streaming standby
 * (`pg_basebackup -R -X stream`), both on free loopback ports in one
 * temporary directory, run as the postgres user (initdb refuses root). For
 * failover tests: freeze the primary's walsender (SIGSTOP) so the standby
 * misses what follows, crash the primary, promote the standby.
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { pgBin } from "./chaos-servers.js";
import { freePort } from "./ports.js";

const run = promisify(execFile);
const IS_ROOT = process.getuid?.() === 0;

/** Why a primary + standby cannot be started here, or null. */
export function standbyUnavailable(): string | null {
  for (const b of ["initdb", "pg_ctl", "pg_basebackup"]) {
    if (!pgBin(b)) return `${b} not found (apt-get install -y postgresql)`;
  }
  return null;
}

function asPostgres(bin: string, args: string[]): { cmd: string; args: string[] } {
  const path = pgBin(bin);
  if (!path) throw new Error(`${bin} not found (apt-get install -y postgresql)`);
  return IS_ROOT
    ? { cmd: "runuser", args: ["-u", "postgres", "--", path, ...args] }
    : { cmd: path, args };
}

async function pgRun(bin: string, args: string[]): Promise<void> {
  const c = asPostgres(bin, args);
  await run(c.cmd, c.args, { timeout: 60_000 });
}

type Node = "primary" | "standby";

export class PgStandbyPair {
  readonly dir: string;
  readonly port: Record<Node, number> = { primary: 0, standby: 0 };
  private readonly running = new Set<Node>();
  private frozen: number | null = null;

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "tenure-pg-standby-"));
    if (IS_ROOT) chmodSync(this.dir, 0o777);
  }

  /** initdb, start the primary, pg_basebackup the standby, start it, wait until it streams. */
  static async start(): Promise<PgStandbyPair> {
    const p = new PgStandbyPair();
    try {
      await p.init();
    } catch (e) {
      await p.stop();
      throw e;
    }
    return p;
  }

  private data(n: Node): string {
    return join(this.dir, n);
  }

  private async init(): Promise<void> {
    await pgRun("initdb", [
      "-D",
      this.data("primary"),
      "-A",
      "trust",
      "-U",
      "postgres",
      "--no-sync",
      "-E",
      "UTF8",
    ]);
    this.port.primary = await freePort();
    await this.ctlStart("primary");
    await pgRun("pg_basebackup", [
      "-h",
      "127.0.0.1",
      "-p",
      String(this.port.primary),
      "-U",
      "postgres",
      "-D",
      this.data("standby"),
      "-R",
      "-X",
      "stream",
      "-c",
      "fast",
      "--no-sync",
    ]);
    this.port.standby = await freePort();
    await this.ctlStart("standby");
    await this.walsenderPid(15_000);
  }

  private async ctlStart(n: Node): Promise<void> {
    // restart_after_crash=off: a crashed primary stays down (it must not come
    // back and ship the WAL its frozen walsender held back).
    const opts = [
      `-p ${this.port[n]}`,
      "-c listen_addresses=127.0.0.1",
      `-c unix_socket_directories=${this.dir}`,
      "-c fsync=off",
      "-c restart_after_crash=off",
      "-c max_connections=50",
    ].join(" ");
    await pgRun("pg_ctl", [
      "-D",
      this.data(n),
      "-o",
      opts,
      "-l",
      join(this.dir, `${n}.log`),
      "-w",
      "-t",
      "30",
      "start",
    ]);
    this.running.add(n);
  }

  url(n: Node): string {
    return `postgres://postgres@127.0.0.1:${this.port[n]}/postgres`;
  }

  /** One statement on a short-lived connection. */
  async query(n: Node, text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
    const c = new pg.Client({ connectionString: this.url(n), application_name: "tenure-test" });
    c.on("error", () => {});
    await c.connect();
    try {
      return (await c.query(text, params)).rows;
    } finally {
      await c.end().catch(() => {});
    }
  }

  /** Pid of the primary's walsender that streams to the standby (waits for it, bounded). */
  async walsenderPid(timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rows = await this.query(
        "primary",
        "SELECT pid FROM pg_stat_replication WHERE state = 'streaming'",
      );
      if (rows.length === 1) return Number(rows[0]!.pid);
      if (Date.now() > deadline) {
        throw new Error(`no streaming standby within ${timeoutMs} ms (log: ${this.dir})`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits (bounded) until the standby has replayed everything the primary has written so far. */
  async waitReplayed(timeoutMs = 10_000): Promise<void> {
    const [row] = await this.query("primary", "SELECT pg_current_wal_lsn()::text AS lsn");
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const [r] = await this.query(
        "standby",
        "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done",
        [row!.lsn],
      );
      if (r?.done === true) return;
      if (Date.now() > deadline) throw new Error(`standby did not replay ${row!.lsn}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGSTOPs the walsender: from now on the standby receives nothing. Returns its pid. */
  async freezeWalsender(): Promise<number> {
    const pid = await this.walsenderPid();
    process.kill(pid, "SIGSTOP");
    this.frozen = pid;
    return pid;
  }

  /**
   * Crashes the primary: SIGKILL of the frozen walsender (it never sends
   * another byte), then an immediate shutdown (no checkpoint, backends quit
   * at once). With restart_after_crash=off the postmaster goes down either
   * way, whichever it sees first.
   */
  async crashPrimary(): Promise<void> {
    this.killFrozen();
    try {
      await pgRun("pg_ctl", [
        "-D",
        this.data("primary"),
        "-m",
        "immediate",
        "-w",
        "-t",
        "30",
        "stop",
      ]);
    } catch (e) {
      // The postmaster may have finished going down on the walsender's death already.
      if (existsSync(join(this.data("primary"), "postmaster.pid"))) throw e;
    }
    this.running.delete("primary");
  }

  /** pg_promote() on the standby; resolves once it accepts writes. */
  async promote(): Promise<void> {
    const [r] = await this.query("standby", "SELECT pg_promote(true, 30) AS ok");
    if (r?.ok !== true) throw new Error("pg_promote() did not finish within 30 s");
  }

  private killFrozen(): void {
    if (this.frozen === null) return;
    try {
      process.kill(this.frozen, "SIGKILL");
    } catch {}
    this.frozen = null;
  }

  /** Stops whatever still runs and removes the directory. Never throws. */
  async stop(): Promise<void> {
    this.killFrozen();
    for (const n of [...this.running]) {
      this.running.delete(n);
      if (!existsSync(this.data(n))) continue;
      await pgRun("pg_ctl", [
        "-D",
        this.data(n),
        "-m",
        "immediate",
        "-w",
        "-t",
        "30",
        "stop",
      ]).catch(() => {});
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
