import { AssertionError } from "node:assert";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, freePortWith } from "./ports.js";
import { waitFor } from "./wait.js";

/** True when `redis-server` is on PATH (needed for the throwaway servers). */
export function hasRedisServerBinary(): boolean {
  return spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;
}

/**
 * A short-lived admin connection that never retries: to `target` (a URL, or a
 * port on 127.0.0.1), for `f`, then closed. Connect within 1 s, each command
 * within 2 s.
 */
export async function withRedisClient<T>(
  target: string | number,
  f: (c: Redis) => Promise<T>,
): Promise<T> {
  const opts = {
    lazyConnect: true,
    connectTimeout: 1000,
    commandTimeout: 2000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  };
  const c =
    typeof target === "number"
      ? new Redis({ host: "127.0.0.1", port: target, ...opts })
      : new Redis(target, opts);
  c.on("error", () => {});
  try {
    await c.connect();
    return await f(c);
  } finally {
    c.disconnect();
  }
}

/** True when a Redis answers PING at `url` within a second. */
export async function redisAnswers(url: string): Promise<boolean> {
  return withRedisClient(url, async (c) => (await c.ping()) === "PONG").catch(() => false);
}

/** Raw RESP PING on 127.0.0.1:port: true on +PONG or -NOAUTH (up, password required). */
function pingAnswer(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (v: boolean) => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on("error", () => done(false));
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG") || buf.startsWith("-NOAUTH"));
    });
  });
}

/** The server process exited while starting (an assertion, so `waitFor` stops at once). */
class ExitedAtStart extends AssertionError {
  constructor(message: string) {
    super({ message });
  }
}

/**
 * A throwaway `redis-server` on a free loopback port with no persistence
 * (`--save "" --appendonly no`) in a temp dir, so a restart loses all data.
 * Never touches the machine's shared Redis.
 */
export class ThrowawayRedis {
  private proc: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), "tenure-redis-"));
  private constructor(
    readonly port: number,
    private readonly extra: string[],
  ) {}

  static async start(extra: string[] = []): Promise<ThrowawayRedis> {
    // A Cluster node also listens on port + 10000 (the cluster bus).
    const cluster = extra.includes("--cluster-enabled");
    for (let attempt = 1; ; attempt++) {
      const r = new ThrowawayRedis(cluster ? await freePortWith(10_000) : await freePort(), extra);
      try {
        await r.startProcess();
        return r;
      } catch (e) {
        // The server exited at once: another process bound the port between the check and
        // the spawn (a full suite starts many servers). Another port, at most three times.
        if (!(e instanceof ExitedAtStart) || attempt >= 3) throw e;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** An admin connection (caller disconnects it). */
  admin(password?: string): Redis {
    const c = new Redis({
      host: "127.0.0.1",
      port: this.port,
      ...(password ? { password } : {}),
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      commandTimeout: 3000,
    });
    c.on("error", () => {});
    return c;
  }

  private async startProcess(): Promise<void> {
    const proc = spawn(
      "redis-server",
      [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        this.dir,
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        ...this.extra,
      ],
      { stdio: "ignore" },
    );
    this.proc = proc;
    const exited = new Promise<void>((r) => proc.once("exit", () => r()));
    let dead = false;
    void exited.then(() => {
      dead = true;
    });
    try {
      await waitFor(
        `throwaway redis-server on port ${this.port}`,
        async () => {
          if (dead) throw new ExitedAtStart(`redis-server on port ${this.port} exited`);
          return pingAnswer(this.port);
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  /** Kills the server without saving anything: all data is gone. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill("SIGKILL");
    await exited;
  }

  /** Stop (losing all data) and start again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.startProcess();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
