/**
 * Throwaway servers the chaos harness starts itself, on free loopback ports
 * with temporary data dirs, so it may restart them or cut their connections
 * without touching the machine's shared PostgreSQL or Redis (other tests run
 * at the same time): redis-server, a PostgreSQL cluster (initdb/pg_ctl as the
 * postgres user), PgBouncer in transaction mode in front of it, and a
 * 3-member etcd cluster.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";

/** Raft election timeout of the chaos etcd cluster (heartbeat 50 ms). */
export const ETCD_ELECTION_TIMEOUT_MS = 500;

/**
 * Resolves once something accepts TCP connections on the port, or throws after
 * `timeoutMs`, or as soon as `proc` (the server meant to listen there) exited.
 */
export async function waitForPort(
  port: number,
  what: string,
  timeoutMs = 15_000,
  proc?: ChildProcess | null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc && proc.exitCode !== null) {
      throw new Error(`${what} exited (code ${proc.exitCode}) before listening on ${port}`);
    }
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        r(true);
      });
      s.once("error", () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(`${what} did not accept connections on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function which(bin: string, extra: string[] = []): string | null {
  for (const d of [...extra, "/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin"]) {
    if (existsSync(join(d, bin))) return join(d, bin);
  }
  return null;
}

/** A PostgreSQL program from the newest Debian server version (the one the harness runs), else PATH. */
export function pgBin(name: string): string | null {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return which(name);
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  for (const v of versions)
    if (existsSync(join(root, v, "bin", name))) return join(root, v, "bin", name);
  return which(name);
}

const IS_ROOT = process.getuid?.() === 0;

/** Runs a command as the postgres user when we are root (initdb and PgBouncer refuse root). */
export function asPostgres(cmd: string, args: string[]): { cmd: string; args: string[] } {
  return IS_ROOT ? { cmd: "runuser", args: ["-u", "postgres", "--", cmd, ...args] } : { cmd, args };
}

function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => p.once("exit", () => r()));
}

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `tenure-chaos-${prefix}-`));
  if (IS_ROOT) chmodSync(d, 0o777);
  return d;
}

/** Why a server cannot be started here (binary missing), or null. */
export function missingBinaries(): Record<string, string | null> {
  return {
    redis: which("redis-server")
      ? null
      : "redis-server not found (apt-get install -y redis-server)",
    postgres:
      pgBin("initdb") && pgBin("pg_ctl")
        ? null
        : "initdb/pg_ctl not found (apt-get install -y postgresql)",
    pgbouncer: which("pgbouncer") ? null : "pgbouncer not found (apt-get install -y pgbouncer)",
    etcd: which("etcd") ? null : "etcd not found (apt-get install -y etcd-server)",
  };
}

/** initdb's arguments for every throwaway cluster: trust auth, superuser postgres, no fsync. */
export function initdbArgs(data: string): string[] {
  return ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"];
}

/** A throwaway PostgreSQL cluster (initdb once, pg_ctl start/stop). */
export class PostgresServer {
  readonly dir = tmp("pg");
  port = 0;
  private running = false;
  /** `settings`: extra server settings (`-c name=value`), e.g. `{ wal_level: "logical" }`. */
  constructor(private readonly settings: Record<string, string> = {}) {}
  async start(): Promise<void> {
    const data = join(this.dir, "data");
    if (!existsSync(data)) {
      const initdb = pgBin("initdb");
      if (!initdb) throw new Error("initdb not found");
      const c = asPostgres(initdb, initdbArgs(data));
      execFileSync(c.cmd, c.args, { stdio: "ignore" });
      this.port = await freePort();
    }
    await this.pgctl("start");
    this.running = true;
  }
  private async pgctl(action: "start" | "stop", mode = "fast"): Promise<void> {
    const pgctl = pgBin("pg_ctl");
    if (!pgctl) throw new Error("pg_ctl not found");
    const data = join(this.dir, "data");
    const extra = Object.entries(this.settings).map(([k, v]) => ` -c ${k}=${v}`);
    const opts = `-p ${this.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${this.dir} -c fsync=off -c max_connections=200${extra.join("")}`;
    const args =
      action === "start"
        ? ["-D", data, "-o", opts, "-l", join(this.dir, "log"), "-w", "-t", "30", "start"]
        : ["-D", data, "-m", mode, "-w", "-t", "30", "stop"];
    const c = asPostgres(pgctl, args);
    await new Promise<void>((resolve, reject) => {
      const p = spawn(c.cmd, c.args, { stdio: "ignore" });
      p.once("error", reject);
      p.once("exit", (code) =>
        code === 0
          ? resolve()
          : reject(new Error(`pg_ctl ${action} exited with ${code} (log: ${this.dir}/log)`)),
      );
    });
  }
  /** Stops the server the crash way (`-m immediate`) and starts it again. */
  async restart(): Promise<void> {
    await this.pgctl("stop", "immediate");
    await this.pgctl("start");
  }
  async stop(): Promise<void> {
    if (this.running) {
      this.running = false;
      await this.pgctl("stop", "immediate").catch(() => {});
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
  /** URL of the `postgres` database, direct. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }
}

/** PgBouncer in transaction mode in front of a {@link PostgresServer}. */
export class PgBouncerServer {
  readonly dir = tmp("pgb");
  port = 0;
  private proc: ChildProcess | null = null;
  constructor(private readonly pgPort: () => number) {}
  async start(): Promise<void> {
    const bin = which("pgbouncer");
    if (!bin) throw new Error("pgbouncer not found");
    if (!this.port) this.port = await freePort();
    const ini = join(this.dir, "pgbouncer.ini");
    writeFileSync(join(this.dir, "userlist.txt"), '"postgres" ""\n');
    writeFileSync(
      ini,
      `[databases]
postgres = host=127.0.0.1 port=${this.pgPort()} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${this.port}
unix_socket_dir =
auth_type = trust
auth_file = ${join(this.dir, "userlist.txt")}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options,application_name
server_reset_query =
server_login_retry = 1
logfile = ${join(this.dir, "pgbouncer.log")}
`,
    );
    if (IS_ROOT) execFileSync("chown", ["-R", "postgres:", this.dir]);
    this.proc = spawn(bin, IS_ROOT ? ["-u", "postgres", ini] : [ini], { stdio: "ignore" });
    await waitForPort(this.port, "pgbouncer");
  }
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }
  private async kill(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (p) {
      p.kill("SIGKILL");
      await exited(p);
    }
  }
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres?tenure_pooler=transaction`;
  }
}

/** A 3-member etcd cluster on loopback. */
export class EtcdCluster {
  readonly dir = tmp("etcd");
  readonly members: { name: string; client: number; peer: number; proc: ChildProcess | null }[] =
    [];
  /**
   * Starts `size` members on free ports. A port found free can be taken
   * before etcd binds it (another test's cluster, an outgoing connection's
   * ephemeral port): a member that exits before listening makes the cluster
   * start again on new ports, up to 3 times.
   */
  async start(size = 3): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.members.length = 0;
      for (let i = 0; i < size; i++) {
        this.members.push({
          name: `m${i}`,
          client: await freePort(),
          peer: await freePort(),
          proc: null,
        });
      }
      for (let i = 0; i < size; i++) this.spawnMember(i, "new");
      try {
        await Promise.all(
          this.members.map((m) => waitForPort(m.client, `etcd ${m.name}`, 15_000, m.proc)),
        );
        break;
      } catch (e) {
        await this.stopMembers();
        rmSync(this.dir, { recursive: true, force: true });
        mkdirSync(this.dir, { recursive: true });
        if (IS_ROOT) chmodSync(this.dir, 0o777);
        if (attempt >= 3) throw e;
      }
    }
    await this.waitHealthy();
  }
  private spawnMember(i: number, state: "new" | "existing"): void {
    const bin = which("etcd");
    if (!bin) throw new Error("etcd not found");
    const m = this.members[i]!;
    const cluster = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peer}`).join(",");
    m.proc = spawn(
      bin,
      [
        "--name",
        m.name,
        "--data-dir",
        join(this.dir, m.name),
        "--listen-client-urls",
        `http://127.0.0.1:${m.client}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${m.client}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${m.peer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${m.peer}`,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        state,
        "--initial-cluster-token",
        `chaos-${process.pid}`,
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        String(ETCD_ELECTION_TIMEOUT_MS),
        "--log-level",
        "error",
      ],
      {
        stdio: "ignore",
        env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === "x64" ? "" : process.arch },
      },
    );
  }
  /** Waits until the cluster answers a linearizable read on every running member. */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of this.members) {
      if (!m.proc) continue;
      for (;;) {
        // Bounded: a member that accepts the connection but does not answer
        // (starved, no quorum) must not hold the wait past its deadline.
        const ok = await fetch(`http://127.0.0.1:${m.client}/health`, {
          signal: AbortSignal.timeout(1000),
        })
          .then(async (r) => r.ok && ((await r.json()) as { health?: string }).health === "true")
          .catch(() => false);
        if (ok) break;
        if (Date.now() > deadline)
          throw new Error(`etcd member ${m.name} not healthy within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
  /** Kills member `i` (SIGKILL) and starts it again with its data. */
  async restartMember(i: number): Promise<void> {
    await this.stopMember(i, "SIGKILL");
    await this.startMember(i);
  }
  /** Stops member `i` (SIGKILL: a crash; SIGTERM: etcd's graceful stop) and waits for its exit. */
  async stopMember(i: number, signal: "SIGKILL" | "SIGTERM"): Promise<void> {
    const m = this.members[i]!;
    const p = m.proc;
    m.proc = null;
    if (p) {
      p.kill(signal);
      await exited(p);
    }
  }
  /** Starts a stopped member `i` again with its data dir; waits until every running member is healthy. */
  async startMember(i: number): Promise<void> {
    const m = this.members[i]!;
    if (!m.proc) this.spawnMember(i, "existing");
    await waitForPort(m.client, `etcd ${m.name}`, 15_000, m.proc);
    await this.waitHealthy();
  }
  async stop(): Promise<void> {
    await this.stopMembers();
    rmSync(this.dir, { recursive: true, force: true });
  }
  private async stopMembers(): Promise<void> {
    for (const m of this.members) {
      const p = m.proc;
      m.proc = null;
      if (p) {
        p.kill("SIGKILL");
        await exited(p);
      }
    }
  }
}

/** Creates a directory (recursively) writable by everyone, for files workers write. */
export function scratchDir(prefix: string): string {
  const d = tmp(prefix);
  mkdirSync(d, { recursive: true });
  return d;
}
