/**
 * A throwaway PostgreSQL primary with an asynchronous streaming standby
 * (`pg_basebackup -R -X stream`), on free loopback ports in one temporary
 * directory, run as the postgres user (initdb refuses root). For failover
 * tests: freeze the primary's walsender (SIGSTOP) so the standby misses what
 * follows, crash the primary, promote the standby. A small TCP forwarder
 * (`vipUrl`, like a virtual IP or HAProxy in front of a Patroni cluster)
 * always leads to the current primary; promotion moves it and drops the
 * connections it carried.
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { asPostgres, initdbArgs, pgBin } from "./chaos-servers.js";
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

async function pgRun(bin: string, args: string[]): Promise<void> {
  const path = pgBin(bin);
  if (!path) throw new Error(`${bin} not found (apt-get install -y postgresql)`);
  const c = asPostgres(path, args);
  await run(c.cmd, c.args, { timeout: 60_000 });
}

/** Forwards every TCP connection to `target`; `moveTo` changes it and drops the old connections. */
class Forwarder {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private target: number) {}
  async start(): Promise<void> {
    const server = createServer((client) => {
      const up = new Socket();
      for (const s of [client, up]) {
        this.sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => {
          this.sockets.delete(s);
          client.destroy();
          up.destroy();
        });
      }
      up.connect(this.target, "127.0.0.1");
      client.pipe(up);
      up.pipe(client);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const a = server.address();
    this.port = a && typeof a === "object" ? a.port : 0;
  }
  moveTo(target: number): void {
    this.target = target;
    for (const s of this.sockets) s.destroy();
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

interface PgNode {
  readonly data: string;
  readonly port: number;
  running: boolean;
}

type Role = "primary" | "standby";

export class PgStandbyPair {
  readonly dir: string;
  private primary: PgNode | null = null;
  private standby: PgNode | null = null;
  private nodes = 0;
  private frozen: number | null = null;
  private readonly vip = new Forwarder(0);

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "tenure-pg-standby-"));
    if (IS_ROOT) chmodSync(this.dir, 0o777);
  }

  /** initdb and start the primary, then a streaming standby ({@link ensureStandby}). */
  static async start(): Promise<PgStandbyPair> {
    const p = new PgStandbyPair();
    try {
      const data = p.nextData();
      await pgRun("initdb", initdbArgs(data));
      p.primary = await p.startNode(data);
      p.vip.moveTo(p.primary.port);
      await p.vip.start();
      await p.ensureStandby();
    } catch (e) {
      await p.stop();
      throw e;
    }
    return p;
  }

  private nextData(): string {
    return join(this.dir, `node${++this.nodes}`);
  }

  private async startNode(data: string): Promise<PgNode> {
    const port = await freePort();
    // restart_after_crash=off: a crashed primary stays down (it must not come
    // back and ship the WAL its frozen walsender held back).
    const opts = [
      `-p ${port}`,
      "-c listen_addresses=127.0.0.1",
      `-c unix_socket_directories=${this.dir}`,
      "-c fsync=off",
      "-c restart_after_crash=off",
      "-c max_connections=100",
    ].join(" ");
    await pgRun("pg_ctl", ["-D", data, "-o", opts, "-l", `${data}.log`, "-w", "-t", "30", "start"]);
    return { data, port, running: true };
  }

  /** The current primary or standby. */
  private node(role: Role): PgNode {
    const n = role === "primary" ? this.primary : this.standby;
    if (!n) throw new Error(`pg standby pair: no ${role} now`);
    return n;
  }

  /** URL of the server in `role` now (after {@link promote}, the promoted one is the primary). */
  url(role: Role): string {
    return `postgres://postgres@127.0.0.1:${this.node(role).port}/postgres`;
  }

  /** URL through the forwarder that always leads to the current primary. */
  get vipUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.vip.port}/postgres`;
  }

  /** One statement on a short-lived connection. */
  async query(
    role: Role,
    text: string,
    params: unknown[] = [],
  ): Promise<Record<string, unknown>[]> {
    const c = new pg.Client({ connectionString: this.url(role), application_name: "tenure-test" });
    c.on("error", () => {});
    await c.connect();
    try {
      return (await c.query(text, params)).rows;
    } finally {
      await c.end().catch(() => {});
    }
  }

  /** A standby streaming from the primary: kept if there is one, else `pg_basebackup -R` + start. */
  async ensureStandby(): Promise<void> {
    if (!this.standby) {
      const data = this.nextData();
      const from = this.node("primary").port;
      await pgRun("pg_basebackup", [
        ...["-h", "127.0.0.1", "-p", String(from), "-U", "postgres", "-D", data],
        ...["-R", "-X", "stream", "-c", "fast", "--no-sync"],
      ]);
      this.standby = await this.startNode(data);
    }
    await this.walsenderPid(15_000);
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
        throw new Error(`no streaming standby within ${timeoutMs} ms (logs: ${this.dir})`);
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
    const p = this.node("primary");
    this.killFrozen();
    try {
      await pgRun("pg_ctl", ["-D", p.data, "-m", "immediate", "-w", "-t", "30", "stop"]);
    } catch (e) {
      // The postmaster may have finished going down on the walsender's death already.
      if (existsSync(join(p.data, "postmaster.pid"))) throw e;
    }
    p.running = false;
  }

  /**
   * pg_promote() on the standby; once it accepts writes it is the primary
   * (`url("primary")`), the forwarder leads to it (its old connections are
   * dropped) and there is no standby until {@link ensureStandby}.
   */
  async promote(): Promise<void> {
    const [r] = await this.query("standby", "SELECT pg_promote(true, 30) AS ok");
    if (r?.ok !== true) throw new Error("pg_promote() did not finish within 30 s");
    const old = this.primary;
    this.primary = this.standby;
    this.standby = null;
    this.vip.moveTo(this.primary!.port);
    if (old && !old.running) rmSync(old.data, { recursive: true, force: true });
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
    await this.vip.stop().catch(() => {});
    for (const n of [this.primary, this.standby]) {
      if (!n?.running) continue;
      n.running = false;
      await pgRun("pg_ctl", ["-D", n.data, "-m", "immediate", "-w", "-t", "30", "stop"]).catch(
        () => {},
      );
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
