/**
 * A throwaway replicated Redis watched by Sentinel: a primary, one replica and
 * three sentinels (quorum 2), each its own process on a free loopback port
 * with a temporary directory, no persistence (a killed node restarts empty and
 * re-syncs from the primary). Tests kill the primary and wait for the
 * sentinels to promote the replica; `stop()` kills everything it started.
 * Never touches the machine's shared Redis.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { Redis } from "ioredis";
import { openRedisStore, type RedisStore } from "../../src/stores/redis/index.js";
import { freePort } from "./ports.js";
import { withRedisClient } from "./redis.js";
import { waitFor } from "./wait.js";

/** The name the sentinels monitor. */
export const SENTINEL_MASTER = "tenure";

const REPL_USER = "repl";
const REPL_PASSWORD = "repl-throwaway";

/** Why a Sentinel group cannot run here (redis-server missing), or null. */
export function sentinelUnavailable(): string | null {
  return spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0
    ? null
    : "redis-server not found (apt-get install -y redis-server redis-sentinel)";
}

/** Debian's `redis-sentinel` when installed, else `redis-server … --sentinel` (the same binary). */
function sentinelCommand(conf: string): [string, string[]] {
  for (const d of ["/usr/bin", "/usr/local/bin"]) {
    if (existsSync(join(d, "redis-sentinel"))) return [join(d, "redis-sentinel"), [conf]];
  }
  return ["redis-server", [conf, "--sentinel"]];
}

interface Proc {
  readonly port: number;
  readonly dir: string;
  proc: ChildProcess | null;
}

function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((r) => p.once("exit", () => r()));
}

export interface SentinelGroupOptions {
  /** Sentinel `down-after-milliseconds`: how long the primary must be silent before it is judged down. Default 1000. */
  downAfterMs?: number;
  /** Sentinel `failover-timeout`. Default 4000. */
  failoverTimeoutMs?: number;
}

/** Primary + replica + 3 sentinels on loopback. */
export class RedisSentinelGroup {
  /** The two data nodes; which one is primary changes with failovers (see {@link primaryPort}). */
  readonly nodes: Proc[] = [];
  readonly sentinels: Proc[] = [];
  private lastKillAt = 0;
  private constructor(private readonly opts: Required<SentinelGroupOptions>) {}

  static async start(opts: SentinelGroupOptions = {}): Promise<RedisSentinelGroup> {
    const g = new RedisSentinelGroup({ downAfterMs: 1000, failoverTimeoutMs: 4000, ...opts });
    try {
      await g.startAll();
    } catch (e) {
      await g.stop();
      throw e;
    }
    return g;
  }

  /** `redis+sentinel://` URL of the three sentinels. */
  get url(): string {
    return `redis+sentinel://${this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(",")}/${SENTINEL_MASTER}`;
  }

  private async startAll(): Promise<void> {
    for (let i = 0; i < 2; i++) {
      this.nodes.push({ port: await freePort(), dir: tmpDir(`node${i}`), proc: null });
    }
    await this.startNode(0, null);
    await this.startNode(1, this.nodes[0]!.port);
    await this.waitReplicaSynced();
    for (let i = 0; i < 3; i++) {
      this.sentinels.push({ port: await freePort(), dir: tmpDir(`sentinel${i}`), proc: null });
    }
    for (let i = 0; i < 3; i++) this.startSentinel(i);
    // Every sentinel knows the primary, the replica and the two other sentinels.
    await waitFor(
      "3 sentinels that see the primary, its replica and each other",
      async () => {
        for (const s of this.sentinels) {
          const ok = await withRedisClient(s.port, async (c) => {
            const m = (await c.call("SENTINEL", "MASTER", SENTINEL_MASTER)) as string[];
            const f = fields(m);
            return (
              f["num-other-sentinels"] === "2" &&
              f["num-slaves"] === "1" &&
              !(f.flags ?? "").includes("down")
            );
          }).catch(() => false);
          if (!ok) return false;
        }
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
  }

  private async startNode(i: number, replicaOf: number | null): Promise<void> {
    const n = this.nodes[i]!;
    const args = [
      "--port",
      String(n.port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      n.dir,
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
      "--logfile",
      join(n.dir, "log"),
      // Replicas authenticate as their own user, so a test can refuse them
      // (freezeReplication) without touching the clients' default user.
      "--user",
      REPL_USER,
      "on",
      `>${REPL_PASSWORD}`,
      "+@all",
      "~*",
      "&*",
      "--masteruser",
      REPL_USER,
      "--masterauth",
      REPL_PASSWORD,
      "--repl-diskless-sync",
      "yes",
      "--repl-diskless-sync-delay",
      "0",
      ...(replicaOf !== null ? ["--replicaof", "127.0.0.1", String(replicaOf)] : []),
    ];
    n.proc = spawn("redis-server", args, { stdio: "ignore" });
    await waitFor(
      `redis-server on port ${n.port}`,
      async () => {
        if (n.proc && (n.proc.exitCode !== null || n.proc.signalCode !== null)) {
          throw new Error(`redis-server on port ${n.port} exited (log: ${n.dir}/log)`);
        }
        return withRedisClient(n.port, async (c) => (await c.ping()) === "PONG");
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  }

  private startSentinel(i: number): void {
    const s = this.sentinels[i]!;
    const conf = join(s.dir, "sentinel.conf");
    const { downAfterMs, failoverTimeoutMs } = this.opts;
    writeFileSync(
      conf,
      [
        `port ${s.port}`,
        "bind 127.0.0.1",
        "daemonize no",
        `dir ${s.dir}`,
        `logfile ${join(s.dir, "log")}`,
        `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${this.nodes[0]!.port} 2`,
        `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${downAfterMs}`,
        `sentinel failover-timeout ${SENTINEL_MASTER} ${failoverTimeoutMs}`,
        `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
        "",
      ].join("\n"),
    );
    const [cmd, args] = sentinelCommand(conf);
    s.proc = spawn(cmd, args, { stdio: "ignore" });
  }

  /** Port of the node the sentinels name as primary (asks each sentinel until one answers). */
  async primaryPort(): Promise<number> {
    for (const s of this.sentinels) {
      if (!s.proc) continue;
      const addr = await withRedisClient(
        s.port,
        async (c) =>
          (await c.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER)) as string[] | null,
      ).catch(() => null);
      if (addr?.[1]) return Number(addr[1]);
    }
    throw new Error("no sentinel named a primary");
  }

  /** Index in {@link nodes} of the node on `port`. */
  indexOf(port: number): number {
    const i = this.nodes.findIndex((n) => n.port === port);
    if (i < 0) throw new Error(`no data node on port ${port}`);
    return i;
  }

  /** An admin connection to the current primary (caller disconnects it). */
  async adminOfPrimary(): Promise<Redis> {
    const port = await this.primaryPort();
    const c = new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1, commandTimeout: 3000 });
    c.on("error", () => {});
    return c;
  }

  /**
   * Until the primary has a replica that acknowledged every write made before
   * the check: a probe write, then WAIT for one replica (offsets compared by
   * hand are rarely equal while a leader writes every tick, because replicas
   * acknowledge only once a second).
   */
  async waitReplicaSynced(timeoutMs = 15_000): Promise<void> {
    await waitFor(
      "the replica in sync with the primary",
      async () => {
        const port = this.sentinels.length ? await this.primaryPort() : this.nodes[0]!.port;
        return withRedisClient(port, async (c) => {
          const info = (await c.info("replication")) as string;
          if (!/role:master/.test(info) || !/slave0:.*state=online/.test(info)) return false;
          await c.set("tenure-test:sync-probe", String(Date.now()));
          return ((await c.call("WAIT", "1", "1000")) as number) >= 1;
        });
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /**
   * Stops replication while the replica stays up: the primary disables the
   * replicas' user and closes their link, so the replica keeps answering the
   * sentinels (and stays eligible for promotion) but cannot resync, and misses
   * every write from now on: what an asynchronous replica that lags at the
   * moment of a crash holds. Lasts until the primary dies or
   * {@link thawReplication}.
   */
  async freezeReplication(): Promise<void> {
    await withRedisClient(await this.primaryPort(), async (c) => {
      await c.call("ACL", "SETUSER", REPL_USER, "off");
      await c.call("CLIENT", "KILL", "USER", REPL_USER);
    });
  }

  /** Undoes {@link freezeReplication}. */
  async thawReplication(): Promise<void> {
    await withRedisClient(await this.primaryPort(), async (c) => {
      await c.call("ACL", "SETUSER", REPL_USER, "on");
    });
  }

  /** GET of `key` on the data node on `port` (a replica answers reads). */
  async getOn(port: number, key: string): Promise<string | null> {
    return withRedisClient(port, (c) => c.get(key));
  }

  /**
   * Sentinel starts no failover of a master within two failover timeouts of
   * the last one: waits that out (from the last {@link killPrimary}) rather
   * than have the next failover stall.
   */
  async waitFailoverAllowed(): Promise<void> {
    const gap = this.lastKillAt + 2 * this.opts.failoverTimeoutMs + 200 - Date.now();
    if (gap > 0) await new Promise((r) => setTimeout(r, gap));
  }

  /** SIGSTOPs sentinel `i`: it keeps its connections but answers nothing until {@link resumeSentinel}. */
  pauseSentinel(i: number): void {
    this.sentinels[i]!.proc?.kill("SIGSTOP");
  }

  /** PING to sentinel `i`. */
  async sentinelPing(i: number): Promise<void> {
    await withRedisClient(this.sentinels[i]!.port, (c) => c.ping());
  }

  /** SIGCONTs sentinel `i`. */
  resumeSentinel(i: number): void {
    this.sentinels[i]!.proc?.kill("SIGCONT");
  }

  /** SIGKILLs the primary (no persistence: its data is gone). Returns its port. */
  async killPrimary(): Promise<number> {
    await this.waitFailoverAllowed();
    this.lastKillAt = Date.now();
    const port = await this.primaryPort();
    await this.killNode(this.indexOf(port));
    return port;
  }

  private async killNode(i: number): Promise<void> {
    const n = this.nodes[i]!;
    const p = n.proc;
    n.proc = null;
    if (p) {
      p.kill("SIGKILL");
      await exited(p);
    }
  }

  /**
   * Until a quorum of sentinels names a primary other than `oldPort` and that
   * node answers `ROLE` as master. Returns the new primary's port.
   */
  async waitPromoted(oldPort: number, timeoutMs = 20_000): Promise<number> {
    return waitFor(
      `the sentinels to promote a replica (old primary ${oldPort})`,
      async () => {
        const named = await Promise.all(
          this.sentinels.map((s) =>
            withRedisClient(s.port, async (c) => {
              const a = (await c.call(
                "SENTINEL",
                "GET-MASTER-ADDR-BY-NAME",
                SENTINEL_MASTER,
              )) as string[];
              return Number(a[1]);
            }).catch(() => 0),
          ),
        );
        const moved = named.filter((p) => p !== 0 && p !== oldPort);
        if (moved.length < 2 || moved.some((p) => p !== moved[0])) return 0;
        const port = moved[0]!;
        const role = await withRedisClient(port, async (c) => (await c.call("ROLE")) as unknown[]);
        return role[0] === "master" ? port : 0;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /** Starts the node on `port` again (empty) as a replica of the current primary, and waits until it is in sync. */
  async restartAsReplica(port: number): Promise<void> {
    const i = this.indexOf(port);
    await this.killNode(i);
    await this.startNode(i, await this.primaryPort());
    await this.waitReplicaSynced();
  }

  /**
   * Brings the group back to primary + in-sync replica as every sentinel sees
   * it: replication thawed, a node that is down (or still a lone primary)
   * restarted empty as a replica of the current primary, and the sentinels
   * agreeing on the primary and seeing its replica healthy. What a test (or a
   * chaos episode) that failed halfway left behind does not leak into the next.
   */
  async ensureReplica(timeoutMs = 30_000): Promise<void> {
    const primary = await waitFor("a primary named by the sentinels", () => this.primaryPort(), {
      timeoutMs,
      intervalMs: 100,
    });
    await this.thawReplication();
    for (const n of this.nodes) {
      if (n.port === primary) continue;
      const role = n.proc
        ? await withRedisClient(n.port, async (c) => (await c.call("ROLE")) as unknown[]).catch(
            () => null,
          )
        : null;
      if (role?.[0] !== "slave" || Number(role[2]) !== primary) {
        await this.restartAsReplica(n.port);
      }
    }
    await this.waitReplicaSynced(timeoutMs);
    await this.waitSentinelsAgree(timeoutMs);
  }

  /** Until every sentinel names the same primary and sees one healthy replica linked to it. */
  async waitSentinelsAgree(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      "every sentinel naming one primary and seeing its replica healthy",
      async () => {
        const primary = await this.primaryPort();
        for (const s of this.sentinels) {
          const ok = await withRedisClient(s.port, async (c) => {
            const a = (await c.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER)) as
              | string[]
              | null;
            if (Number(a?.[1]) !== primary) return false;
            const reps = (await c.call("SENTINEL", "REPLICAS", SENTINEL_MASTER)) as string[][];
            const up = reps.map(fields).filter((r) => r.flags === "slave");
            return up.length >= 1 && up.every((r) => r["master-link-status"] === "ok");
          }).catch(() => false);
          if (!ok) return false;
        }
        return true;
      },
      { timeoutMs, intervalMs: 100 },
    );
  }

  /** Kills every process it started and removes their directories. */
  async stop(): Promise<void> {
    for (const p of [...this.sentinels, ...this.nodes]) {
      const proc = p.proc;
      p.proc = null;
      if (proc) {
        proc.kill("SIGKILL");
        await exited(proc);
      }
      rmSync(p.dir, { recursive: true, force: true });
    }
  }
}

function tmpDir(what: string): string {
  return mkdtempSync(join(tmpdir(), `tenure-sentinel-${what}-`));
}

/** SENTINEL MASTER's flat [k, v, k, v…] reply as an object. */
function fields(flat: readonly string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[flat[i]!] = flat[i + 1]!;
  return o;
}

/**
 * Inside a `describe`: a throwaway Sentinel group (primary + replica + 3
 * sentinels) started before its tests and stopped after them, and `open()`
 * for stores on it (command timeout 1 s unless told; closed after them).
 */
export function sentinelFixture(): {
  readonly group: RedisSentinelGroup;
  open(opts?: Parameters<typeof openRedisStore>[1]): Promise<RedisStore>;
} {
  let group: RedisSentinelGroup | undefined;
  const stores: RedisStore[] = [];
  before(async () => {
    group = await RedisSentinelGroup.start({ downAfterMs: 500, failoverTimeoutMs: 2000 });
  });
  after(async () => {
    for (const s of stores) await s.close().catch(() => {});
    await group?.stop();
  });
  return {
    get group() {
      if (!group) throw new Error("the Sentinel group is not started (before() has not run)");
      return group;
    },
    async open(opts = { commandTimeoutMs: 1000 }) {
      // restartGuard off would hide nothing here: the promoted replica has been up for long.
      const s = await openRedisStore(this.group.url, opts);
      stores.push(s);
      return s;
    },
  };
}
