import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { waitFor } from "./wait.js";

/** True when the `etcd` binary is on PATH (needed for throwaway members). */
export function hasEtcdBinary(): boolean {
  return spawnSync("etcd", ["--version"], { stdio: "ignore" }).status === 0;
}

/** True when an etcd member answers `/health` with `"health":"true"` on 127.0.0.1:port. */
export function etcdHealthy(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get({ host: "127.0.0.1", port, path: "/health", timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => resolve(/"health":\s*"true"/.test(body)));
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => {
      req.destroy();
      resolve(false);
    });
  });
}

/** Client ports of an `etcd://h:p,h:p` URL. */
export function etcdPorts(url: string): number[] {
  return url
    .replace(/^etcds?:\/\//, "")
    .split(/[/?]/)[0]!
    .split(",")
    .map((hp) => Number(hp.split(":").pop()));
}

/** True when every member of an `etcd://…` URL is healthy. */
export async function etcdAnswers(url: string | undefined): Promise<boolean> {
  if (!url) return false;
  const ok = await Promise.all(etcdPorts(url).map((p) => etcdHealthy(p)));
  return ok.every(Boolean);
}

/**
 * A throwaway single-member etcd on free loopback ports with its own temp
 * data dir. Restart keeps the data dir (etcd is durable), so tokens must keep
 * increasing across it. Never touches the shared test services.
 */
export class ThrowawayEtcd {
  private proc: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), "tenure-etcd-"));
  private constructor(
    readonly port: number,
    private readonly peerPort: number,
  ) {}

  static async start(): Promise<ThrowawayEtcd> {
    const e = new ThrowawayEtcd(await freePort(), await freePort());
    await e.startProcess();
    return e;
  }

  get url(): string {
    return `etcd://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  private async startProcess(): Promise<void> {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const client = `http://127.0.0.1:${this.port}`;
    const proc = spawn(
      "etcd",
      [
        "--name",
        "tw",
        "--data-dir",
        join(this.dir, "data"),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        `tw=${peer}`,
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--logger",
        "zap",
        "--log-level",
        "error",
        "--log-outputs",
        join(this.dir, "etcd.log"),
      ],
      { stdio: "ignore" },
    );
    this.proc = proc;
    let dead = false;
    proc.once("exit", () => {
      dead = true;
    });
    try {
      await waitFor(
        `throwaway etcd on port ${this.port}`,
        async () => {
          if (dead) throw new Error(`etcd on port ${this.port} exited`);
          return etcdHealthy(this.port);
        },
        { timeoutMs: 15_000, intervalMs: 50 },
      );
    } catch (e) {
      await this.kill();
      throw e;
    }
  }

  /** SIGSTOP: the member keeps its sockets but answers nothing (a partition). */
  pause(): void {
    this.proc?.kill("SIGSTOP");
  }

  resume(): void {
    this.proc?.kill("SIGCONT");
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill("SIGCONT");
    p.kill("SIGKILL");
    await exited;
  }

  /** Starts the member again on the same ports with the same data dir. */
  async start(): Promise<void> {
    if (this.proc) return;
    await this.startProcess();
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.startProcess();
  }

  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A member of the shared 3-member cluster started by scripts/services/etcd.sh
 * (`TENURE_TEST_ETCD_DIR` holds `<member>.pid`, `<member>.port`, `<member>.sh`).
 */
export class ClusterMember {
  constructor(
    readonly dir: string,
    readonly name: string,
  ) {}

  static all(dir: string | undefined): ClusterMember[] {
    if (!dir || !existsSync(join(dir, "c1.sh"))) return [];
    return ["c1", "c2", "c3"].map((n) => new ClusterMember(dir, n));
  }

  get port(): number {
    return Number(readFileSync(join(this.dir, `${this.name}.port`), "utf8").trim());
  }

  private pid(): number | undefined {
    const p = join(this.dir, `${this.name}.pid`);
    if (!existsSync(p)) return undefined;
    const n = Number(readFileSync(p, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  }

  alive(): boolean {
    const pid = this.pid();
    if (!pid) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** SIGKILL the member and wait until its process is gone. */
  async kill(): Promise<void> {
    const pid = this.pid();
    if (!pid) return;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      return;
    }
    await waitFor(`etcd member ${this.name} to exit`, () => !this.alive(), {
      timeoutMs: 5000,
      intervalMs: 20,
    });
  }

  /** Starts the member again (same ports, same data dir) and waits until it is healthy. */
  async start(): Promise<void> {
    if (!this.alive())
      execFileSync("bash", [join(this.dir, `${this.name}.sh`)], { stdio: "ignore" });
    await waitFor(`etcd member ${this.name} healthy`, () => etcdHealthy(this.port), {
      timeoutMs: 15_000,
      intervalMs: 50,
    });
  }
}
