/**
 * The chaos harness: runs N candidate processes (test/chaos/worker.ts) against
 * one backend, injects one fault, heals it, probes every survivor, stops them,
 * and hands the recorded history to the checker.
 *
 * Every server the harness restarts or whose connections it kills is a
 * throwaway one it started itself (test/helpers/chaos-servers.ts). The fenced
 * writes go through the store under test: `fence(tx)` on the throwaway
 * PostgreSQL (one table per episode, dropped afterwards), `putFenced` on the
 * other stores.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import pg from "pg";
import { openStore } from "../../src/index.js";
import {
  ETCD_ELECTION_TIMEOUT_MS,
  EtcdCluster,
  missingBinaries,
  PgBouncerServer,
  PostgresServer,
  scratchDir,
} from "../helpers/chaos-servers.js";
import { FaultProxy } from "../helpers/fault-proxy.js";
import { PgStandbyPair, standbyUnavailable } from "../helpers/pg-standby.js";
import { ThrowawayRedis } from "../helpers/redis.js";
import type { RedisSentinelGroup } from "../helpers/redis-sentinel.js";
import { CHAIN_KEY, lostChainValues, parseChainValue } from "./chain.js";
import {
  checkEpisode,
  type EpisodeHistory,
  type EpisodeResult,
  type FencedWrite,
  type WorkerLine,
} from "./checker.js";
import {
  ETCD_CLUSTER_FAULTS,
  type EtcdClusterFault,
  isEtcdClusterFault,
  runEtcdClusterFault,
} from "./faults-etcd-cluster.js";
import {
  isSentinelFault,
  runSentinelFault,
  SENTINEL_FAULTS,
  sentinelUnavailable,
  startSentinelGroup,
} from "./faults-redis-sentinel.js";
import {
  integrity,
  isSqliteFault,
  type Launch,
  runSqliteFault,
  SQLITE_FAULTS,
  type SqlitePlan,
  sqliteDir,
  sqliteFaultsHere,
  sqlitePlan,
  writeLockHeld,
} from "./faults-sqlite.js";
import { loseTermOnPrimary } from "./lost-term.js";
import type { WorkerConfig } from "./worker.js";
import { WorkerProcess } from "./worker-process.js";

export const BACKENDS = [
  "sqlite",
  "postgres",
  "pgbouncer",
  "redis",
  "etcd",
  "postgres-standby",
  "etcd-cluster",
  "redis-sentinel",
] as const;
export type BackendName = (typeof BACKENDS)[number];

export const PROCESS_FAULTS = [
  "pause-long",
  "pause-short",
  "kill-leader",
  "graceful-stop",
] as const;
export const NET_FAULTS = ["latency", "blackhole", "reset", "half-open"] as const;
export const SERVER_FAULTS = ["kill-conns", "restart-server"] as const;
/**
 * Faults of a replicated topology. `promote-standby` (backend
 * `postgres-standby`): the standby stops receiving WAL (walsender SIGSTOP),
 * the leader is SIGKILLed and another candidate starts a term on the primary
 * that the standby never sees, the primary crashes, the standby is promoted
 * and the clients' address moves to it.
 */
export const REPLICA_FAULTS = ["promote-standby"] as const;
export type FaultKind =
  | (typeof PROCESS_FAULTS)[number]
  | (typeof NET_FAULTS)[number]
  | (typeof SERVER_FAULTS)[number]
  | (typeof REPLICA_FAULTS)[number]
  | EtcdClusterFault
  | (typeof SQLITE_FAULTS)[number]
  | (typeof SENTINEL_FAULTS)[number];
export const ALL_FAULTS: readonly FaultKind[] = [
  ...PROCESS_FAULTS,
  ...NET_FAULTS,
  ...SERVER_FAULTS,
  ...REPLICA_FAULTS,
  ...ETCD_CLUSTER_FAULTS,
  ...SQLITE_FAULTS,
  ...SENTINEL_FAULTS,
];

/** Which faults apply to a backend: SQLite has no network; etcd has no server-side connection kill. */
export function faultsFor(b: BackendName): FaultKind[] {
  if (b === "sqlite") return [...PROCESS_FAULTS, ...sqliteFaultsHere()];
  if (b === "etcd") return [...PROCESS_FAULTS, ...NET_FAULTS, "restart-server"];
  if (b === "postgres-standby") return [...REPLICA_FAULTS];
  if (b === "etcd-cluster") return [...ETCD_CLUSTER_FAULTS];
  if (b === "redis-sentinel") return [...SENTINEL_FAULTS];
  return [...PROCESS_FAULTS, ...NET_FAULTS, ...SERVER_FAULTS];
}

/** Timing of every episode. */
export interface ChaosTiming {
  /** Lease ttl. Default 1000. */
  ttlMs: number;
  /** Follower retry. Default 200. */
  retryMs: number;
  /** Leader tick interval. Default 100. */
  tickMs: number;
  /** Candidates per episode. Default 3. */
  candidates: number;
  /** Allowed trust-window overlap (ms). Default 0. */
  safetyBoundMs: number;
}

export const DEFAULT_TIMING: ChaosTiming = Object.freeze({
  ttlMs: 1000,
  retryMs: 200,
  tickMs: 100,
  candidates: 3,
  safetyBoundMs: 0,
});

/** A small seeded PRNG (mulberry32). */
/**
 * The store URL a worker opens. On the 3-member etcd cluster, with a call
 * deadline of the ttl (at least 500 ms), as the workers' PostgreSQL fence
 * pool has a query timeout of the ttl: a write that reached a follower while
 * the raft leader died is lost with it and waits for its whole deadline, and
 * a tick's fenced write stuck for the 3 s default held the next term's work
 * in that process back for 2–3 s after the heal (the work of two terms never
 * overlaps in one process). docs/stores/etcd.md says to do the same.
 */
export function workerUrl(b: { name: BackendName; url: string }, ttlMs: number): string {
  if (b.name !== "etcd-cluster") return b.url;
  const sep = b.url.includes("?") ? "&" : "?";
  return `${b.url}${sep}callTimeoutMs=${Math.max(500, ttlMs)}`;
}

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORKER = fileURLToPath(new URL("./worker.js", import.meta.url));
const now = () => process.hrtime.bigint();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Backend {
  name: BackendName;
  url: string;
  proxies: FaultProxy[];
  /** The fenced resource: the store's own fenced write (see WorkerConfig.fence). */
  fence: { mode: "store-fence"; pgUrl: string; adminUrl: string } | { mode: "put-fenced" };
  /** Whether a `restart` loses every lease (a store without persistence). */
  restartLosesData?: boolean;
  killConns?: () => Promise<void>;
  /** Restarts the server; `r` picks which one where there is a choice. Returns what was restarted. */
  restart?: (r: number) => Promise<string>;
  /** A primary with an async standby behind `url` (a forwarder to the current primary). */
  standby?: PgStandbyPair;
  /** The etcd cluster whose members `proxies` front, in member order (backend `etcd-cluster`). */
  etcdCluster?: EtcdCluster;
  /** A primary + replica + 3 sentinels; `url` is `redis+sentinel://…`. */
  sentinel?: RedisSentinelGroup;
}

/** Starts (lazily) and owns the throwaway servers and proxies of every backend. */
export class ChaosEnv {
  private readonly ready = new Map<BackendName, Promise<Backend>>();
  private readonly cleanups: (() => Promise<void>)[] = [];
  readonly scratch = scratchDir("env");

  /** Why a backend cannot run here, or null. */
  static missing(b: BackendName): string | null {
    const m = missingBinaries();
    if (b === "sqlite") return null;
    if (b === "postgres") return m.postgres;
    if (b === "pgbouncer") return m.postgres ?? m.pgbouncer;
    if (b === "redis") return m.redis;
    if (b === "postgres-standby") return m.postgres ?? standbyUnavailable();
    if (b === "redis-sentinel") return sentinelUnavailable();
    return m.etcd;
  }

  backend(b: BackendName): Promise<Backend> {
    let p = this.ready.get(b);
    if (!p) {
      p = this.open(b);
      this.ready.set(b, p);
    }
    return p;
  }

  private async proxy(port: number): Promise<FaultProxy> {
    const p = new FaultProxy("127.0.0.1", port);
    await p.start();
    this.cleanups.push(() => p.stop());
    return p;
  }

  private pgStarting: Promise<PostgresServer> | null = null;
  /** The one throwaway PostgreSQL server (shared by the postgres and pgbouncer backends). */
  private pg(): Promise<PostgresServer> {
    if (!this.pgStarting) {
      const s = new PostgresServer();
      this.cleanups.push(() => s.stop());
      this.pgStarting = s.start().then(() => s);
    }
    return this.pgStarting;
  }

  private async open(b: BackendName): Promise<Backend> {
    const putFenced = { mode: "put-fenced" as const };
    if (b === "sqlite") {
      // On a small tmpfs of its own where the machine allows it (fault disk-full).
      const fs = sqliteDir(this.scratch);
      this.cleanups.push(async () => fs.cleanup());
      return {
        name: b,
        url: `sqlite:${join(fs.dir, "leases.db")}`,
        proxies: [],
        fence: putFenced,
      };
    }
    if (b === "postgres" || b === "pgbouncer") {
      const server = await this.pg();
      const killConns = () => terminateBackends(server.url);
      if (b === "postgres") {
        const px = await this.proxy(server.port);
        const url = `postgres://postgres@127.0.0.1:${px.port}/postgres`;
        return {
          name: b,
          url,
          proxies: [px],
          fence: { mode: "store-fence", pgUrl: url, adminUrl: server.url },
          killConns,
          restart: async () => {
            await server.restart();
            return "pg_ctl stop -m immediate + start";
          },
        };
      }
      const bouncer = new PgBouncerServer(() => server.port);
      this.cleanups.push(() => bouncer.stop());
      await bouncer.start();
      const px = await this.proxy(bouncer.port);
      const url = `postgres://postgres@127.0.0.1:${px.port}/postgres?tenure_pooler=transaction`;
      return {
        name: b,
        url,
        proxies: [px],
        fence: { mode: "store-fence", pgUrl: url, adminUrl: server.url },
        killConns,
        restart: async (r) => {
          if (r < 0.5) {
            await bouncer.restart();
            return "SIGKILL + restart PgBouncer";
          }
          await server.restart();
          return "pg_ctl stop -m immediate + start of the PostgreSQL behind PgBouncer";
        },
      };
    }
    if (b === "postgres-standby") {
      // Its own primary + standby: a failover consumes the primary, and the
      // next episode re-seeds a standby from the promoted server.
      const pair = await PgStandbyPair.start();
      this.cleanups.push(() => pair.stop());
      return {
        name: b,
        url: pair.vipUrl,
        proxies: [],
        fence: { mode: "store-fence", pgUrl: pair.vipUrl, adminUrl: pair.vipUrl },
        standby: pair,
      };
    }
    if (b === "redis-sentinel") {
      const group = await startSentinelGroup(this.cleanups);
      return { name: b, url: group.url, proxies: [], fence: putFenced, sentinel: group };
    }
    if (b === "redis") {
      // No persistence, like this machine's own Redis: a restart forgets every
      // lease, the hardest case for the restart guard.
      const server = await ThrowawayRedis.start();
      this.cleanups.push(() => server.dispose());
      const px = await this.proxy(server.port);
      return {
        name: b,
        url: `redis://127.0.0.1:${px.port}`,
        proxies: [px],
        fence: putFenced,
        restartLosesData: true,
        killConns: async () => {
          const r = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
          try {
            await r.connect();
            await r.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
            await r.call("CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes");
          } finally {
            r.disconnect();
          }
        },
        restart: async () => {
          await server.restart();
          return "SIGKILL + restart redis-server (no persistence: every lease is lost)";
        },
      };
    }
    const cluster = new EtcdCluster();
    this.cleanups.push(() => cluster.stop());
    await cluster.start(3);
    const proxies = await Promise.all(cluster.members.map((m) => this.proxy(m.client)));
    if (b === "etcd-cluster") {
      // Its own cluster: its faults stop members, the etcd backend's must not see that.
      return {
        name: b,
        url: `etcd://${proxies.map((p) => `127.0.0.1:${p.port}`).join(",")}`,
        proxies,
        fence: putFenced,
        etcdCluster: cluster,
      };
    }
    let next = 0;
    return {
      name: b,
      url: `etcd://${proxies.map((p) => `127.0.0.1:${p.port}`).join(",")}`,
      proxies,
      fence: putFenced,
      restart: async () => {
        const i = next++ % cluster.members.length;
        await cluster.restartMember(i);
        return `SIGKILL + restart etcd member ${i} of 3`;
      },
    };
  }

  async close(): Promise<void> {
    for (const c of this.cleanups.reverse()) await c().catch(() => {});
    this.cleanups.length = 0;
  }
}

/** A connection for the harness's own bookkeeping; retried while a restarted server comes back. */
export async function adminClient(url: string, timeoutMs = 5000): Promise<pg.Client> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = new pg.Client({ connectionString: url });
    c.on("error", () => {});
    try {
      await c.connect();
      return c;
    } catch (e) {
      await c.end().catch(() => {});
      if (Date.now() > deadline) throw e;
      await sleep(100);
    }
  }
}

export async function terminateBackends(url: string): Promise<void> {
  const c = await adminClient(url);
  try {
    await c.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
  } finally {
    await c.end();
  }
}

/** Stops every live worker with SIGTERM (SIGKILL after `killAfterMs`); resolves once all exited. */
export async function stopWorkers(
  workers: readonly WorkerProcess<{ event: string; t: string }>[],
  killAfterMs: number,
): Promise<void> {
  for (const c of workers) if (c.alive) c.proc.kill("SIGTERM");
  const all = Promise.all(workers.map((c) => c.exited()));
  const killer = setTimeout(() => {
    for (const c of workers) if (c.alive) c.proc.kill("SIGKILL");
  }, killAfterMs);
  await all;
  clearTimeout(killer);
}

/** The `columns` of an episode's fence table in commit order (`seq`); the table is dropped. */
export async function takeFenceRows<T>(
  adminUrl: string,
  table: string,
  columns: string,
): Promise<T[]> {
  const reader = await adminClient(adminUrl, 10_000);
  try {
    const res = await reader.query(`SELECT ${columns} FROM "${table}" ORDER BY seq`);
    await reader.query(`DROP TABLE IF EXISTS "${table}"`);
    return res.rows as T[];
  } finally {
    await reader.end().catch(() => {});
  }
}

/** One candidate process and what it printed. */
class Candidate extends WorkerProcess<WorkerLine> {
  constructor(cfg: WorkerConfig, launch?: Launch) {
    super(WORKER, cfg, launch);
  }
  leading(): boolean {
    const e = this.lines.filter((l) => l.event === "lead-start" || l.event === "lead-end").at(-1);
    return this.alive && e?.event === "lead-start";
  }
}

/** How a process fault's detail names its target: `who` it hit, `the` one, what SIGTERM makes it do. */
export interface FaultNames {
  who: string;
  the: string;
  stop: string;
}

/** Where a fault records the processes it paused or that died. */
export interface FaultRecord {
  pauses: { pid: number; from: string; to: string }[];
  deaths: { pid: number; t: string }[];
}

/**
 * A process fault (`PROCESS_FAULTS`) on worker `lead`: SIGSTOP for a seeded
 * time, SIGKILL, or SIGTERM (waiting for its exit); its pause or death is
 * recorded. `names` words the detail (`who` it hit, what SIGTERM makes it do).
 * What it did, and when it started and healed.
 */
async function runProcessFault(
  fault: (typeof PROCESS_FAULTS)[number],
  lead: WorkerProcess<{ event: string; t: string }>,
  names: FaultNames,
  ttlMs: number,
  r: () => number,
  record: FaultRecord,
  sqliteFile?: string,
): Promise<{ detail: string; faultAt: bigint; healAt: bigint }> {
  if (fault === "pause-long" || fault === "pause-short") {
    const ms = Math.round(
      fault === "pause-long" ? ttlMs * (1.3 + r()) : ttlMs * (0.2 + 0.35 * r()),
    );
    const faultAt = now();
    const t0 = Date.now();
    lead.paused = true;
    lead.proc.kill("SIGSTOP");
    // On SQLite a process stopped inside a write transaction keeps the file's
    // write lock: nobody can write until it resumes (the stop-in-tx fault,
    // landed on by chance: group:sqlite:pause-long:1610044823 had every
    // member blocked for the whole 1.7 s pause).
    const lockHeld =
      fault === "pause-long" && sqliteFile !== undefined
        ? await writeLockHeld(sqliteFile, Math.min(200, ms / 4))
        : false;
    await sleep(Math.max(0, ms - (Date.now() - t0))); // the fault's length, not a wait for a result
    const to = now();
    lead.proc.kill("SIGCONT");
    lead.paused = false;
    record.pauses.push({ pid: lead.pid, from: faultAt.toString(), to: to.toString() });
    // A long pause: the rest of the fleet could take over from the start of the pause, unless
    // the paused process held the store's only write lock (then from the SIGCONT).
    const healAt = fault === "pause-long" && !lockHeld ? faultAt : to;
    const lock = lockHeld
      ? " holding the SQLite write lock (nobody could write until SIGCONT)"
      : "";
    return { detail: `SIGSTOP ${names.who} for ${ms} ms${lock}`, faultAt, healAt };
  }
  if (fault === "kill-leader") {
    const faultAt = now();
    lead.proc.kill("SIGKILL");
    record.deaths.push({ pid: lead.pid, t: faultAt.toString() });
    return { detail: `SIGKILL ${names.who}`, faultAt, healAt: faultAt };
  }
  const faultAt = now();
  lead.stopping = true;
  lead.proc.kill("SIGTERM");
  await exitWithin(lead, 10_000, `the SIGTERMed ${names.the} to exit`);
  record.deaths.push({ pid: lead.pid, t: now().toString() });
  return { detail: `SIGTERM ${names.who} (${names.stop})`, faultAt, healAt: faultAt };
}

/** What a fault did, when it started and healed, and when the store lost its data (if it did). */
export interface FaultRun {
  detail: string;
  faultAt: bigint;
  healAt: bigint;
  dataLostAt?: bigint;
}

/**
 * Runs a fault that single-lease and group episodes inject the same way: a
 * process fault on `lead` (`names` words it), a network fault on every
 * proxy, the server-side kill of every client connection, a server restart,
 * or a fault of the 3-member etcd cluster. Null for any other fault: the
 * caller runs it (a standby promotion, a Sentinel failover, SQLite's own).
 */
export async function runSharedFault(
  spec: EpisodeSpec,
  b: Backend,
  lead: WorkerProcess<{ event: string; t: string }>,
  names: FaultNames,
  ttlMs: number,
  r: () => number,
  record: FaultRecord,
): Promise<FaultRun | null> {
  const fault = spec.fault;
  if ((PROCESS_FAULTS as readonly string[]).includes(fault))
    return runProcessFault(
      fault as (typeof PROCESS_FAULTS)[number],
      lead,
      names,
      ttlMs,
      r,
      record,
      spec.backend === "sqlite" ? b.url.slice("sqlite:".length) : undefined,
    );
  if ((NET_FAULTS as readonly string[]).includes(fault))
    return runNetFault(fault as (typeof NET_FAULTS)[number], b.proxies, ttlMs, r);
  if (fault === "kill-conns") {
    if (!b.killConns) throw new Error(`${spec.backend} has no server-side connection kill`);
    const detail =
      spec.backend === "redis"
        ? "CLIENT KILL (normal + pubsub)"
        : "pg_terminate_backend(all clients)";
    const faultAt = now();
    await b.killConns();
    return { detail, faultAt, healAt: now() };
  }
  if (fault === "restart-server") {
    if (!b.restart) throw new Error(`${spec.backend} has no restartable server`);
    const faultAt = now();
    const detail = await b.restart(r());
    const run: FaultRun = { detail, faultAt, healAt: now() };
    if (b.restartLosesData) run.dataLostAt = faultAt;
    return run;
  }
  if (isEtcdClusterFault(fault)) {
    if (!b.etcdCluster) throw new Error(`${spec.backend} is not an etcd cluster`);
    return runEtcdClusterFault(fault, b.etcdCluster, b.proxies, ttlMs, r);
  }
  return null;
}

/**
 * A network fault between the workers and the store (`NET_FAULTS`) on every
 * proxy: injected, held for its seeded length, healed. What it did, and when
 * it started and healed.
 */
async function runNetFault(
  fault: (typeof NET_FAULTS)[number],
  proxies: readonly FaultProxy[],
  ttlMs: number,
  r: () => number,
): Promise<{ detail: string; faultAt: bigint; healAt: bigint }> {
  if (fault === "latency") {
    const ms = Math.round(ttlMs * (0.15 + 0.25 * r()));
    const hold = Math.round(ttlMs * (1.5 + r()));
    const faultAt = now();
    for (const p of proxies) p.latency(ms);
    await sleep(hold); // the fault's length
    for (const p of proxies) p.heal();
    const detail = `+${ms} ms each way (round trip ≈ ${2 * ms} ms, ttl ${ttlMs}) for ${hold} ms`;
    return { detail, faultAt, healAt: now() };
  }
  if (fault === "reset") {
    const n = 1 + Math.floor(r() * 3);
    const faultAt = now();
    for (let i = 0; i < n; i++) {
      if (i > 0) await sleep(Math.round(ttlMs / 3)); // spacing of the resets
      for (const p of proxies) p.resetAll();
    }
    const detail = `${n} connection reset(s), ${Math.round(ttlMs / 3)} ms apart`;
    return { detail, faultAt, healAt: now() };
  }
  const hold = Math.round(ttlMs * (1.2 + r()));
  const dir = r() < 0.5 ? "down" : "up";
  const detail =
    fault === "blackhole"
      ? `black hole both ways for ${hold} ms`
      : `half-open (${dir === "down" ? "replies" : "requests"} held) for ${hold} ms`;
  const faultAt = now();
  for (const p of proxies) {
    if (fault === "blackhole") p.blackhole();
    else p.halfOpen(dir);
  }
  await sleep(hold); // the fault's length
  // A half-open connection never recovers by itself: its peer resets it.
  if (fault === "half-open") for (const p of proxies) p.resetAll();
  for (const p of proxies) p.heal();
  return { detail, faultAt, healAt: now() };
}

/** Polls `check` every 10 ms; throws (failing the episode) when `timeoutMs` passes first. */
export async function must(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Resolves when `c` exits; throws when it has not within `timeoutMs`. */
export async function exitWithin(
  c: { exited(): Promise<void> },
  timeoutMs: number,
  what: string,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      c.exited(),
      new Promise<never>((_, rej) => {
        timer = setTimeout(
          () => rej(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One probe round: SIGUSR2 to every live candidate, and the answers they gave
 * after it (within `answerMs`). Returns when it was sent, whom it asked, and
 * whether the fleet agrees: exactly one leader, whose current term ticked
 * after `heal` and had a fenced write of such a tick accepted, named by every
 * other probed candidate.
 */
async function probeRound(
  cands: readonly Candidate[],
  heal: bigint,
  answerMs: number,
): Promise<{ at: bigint; probed: Candidate[]; answered: boolean; agrees: boolean }> {
  const probed = cands.filter((c) => c.alive && !c.stopping && !c.paused);
  const at = now();
  for (const c of probed) c.proc.kill("SIGUSR2");
  const answer = (c: Candidate) =>
    c.lines.filter((l) => l.event === "state" && BigInt(l.t) >= at).at(-1);
  let answered = true;
  try {
    await must("probe answers", () => probed.every((c) => answer(c) || !c.alive), answerMs);
  } catch {
    answered = false;
  }
  const answers = probed.map((c) => ({ c, a: answer(c) }));
  const leaders = answers.filter((x) => x.a?.state === "leader");
  let agrees = answered && leaders.length === 1;
  if (agrees) {
    const { c, a } = leaders[0]!;
    const token = a!.token;
    // Its term ticked after the heal, and a fenced write of that term came back accepted after that tick.
    const tick = c.lines.find(
      (l) => l.event === "tick" && l.token === token && BigInt(l.t) >= heal,
    );
    agrees =
      c.alive &&
      !!tick &&
      c.lines.some(
        (l) => l.event === "wrote" && l.token === token && BigInt(l.t) > BigInt(tick.t),
      ) &&
      answers.every((x) => x.c === c || (x.a?.state === "follower" && x.a.leader === a!.holder));
  }
  return { at, probed, answered, agrees };
}

let episodeCounter = 0;

/** What to run: one backend, one fault, one seed (which fixes every random choice). */
export interface EpisodeSpec {
  backend: BackendName;
  fault: FaultKind;
  seed: number;
  /** `group`: a group episode (test/chaos/group-harness.ts) instead of a single lease. */
  mode?: "group";
}

export interface EpisodeOutcome extends EpisodeResult {
  /** Replay command for this episode. */
  readonly replay: string;
  readonly durationMs: number;
  /** The fault's parameters, for the report. */
  readonly detail: string;
  /** Worker stderr when something failed. */
  readonly stderr?: string;
}

/** The accepted writes of a `put-fenced` chain: every value a worker wrote or read as the previous one, and the last. */
function chainWrites(
  lines: readonly WorkerLine[],
  last: string | null,
  lost: ReadonlySet<string> = new Set(),
): FencedWrite[] {
  const values = new Set<string>();
  for (const l of lines as readonly (WorkerLine & { value?: string; prev?: string | null })[]) {
    if (l.event === "wrote" && l.value) values.add(l.value);
    if (typeof l.prev === "string") values.add(l.prev);
  }
  if (last !== null) values.add(last);
  const out: FencedWrite[] = [];
  for (const v of values) {
    if (lost.has(v)) continue;
    const p = parseChainValue(v);
    if (!p) throw new Error(`the fenced chain holds ${JSON.stringify(v)}, not a chain value`);
    out.push({ seq: Number(p.seq), token: p.token, pid: p.pid, t: p.t });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** Runs one episode and checks it. */
export async function runEpisode(
  env: ChaosEnv,
  spec: EpisodeSpec,
  timing: ChaosTiming = DEFAULT_TIMING,
): Promise<EpisodeOutcome> {
  const started = Date.now();
  const rand = rng(spec.seed);
  const b = await env.backend(spec.backend);
  const { ttlMs, retryMs, tickMs } = timing;
  const id = `${process.pid}_${++episodeCounter}_${spec.seed}`;
  const table = `chaos_w_${id}`;
  const name = `chaos-${spec.backend}-${id}`.replace(/_/g, "-");
  const fence = b.fence;

  if (fence.mode === "store-fence") {
    const admin = await adminClient(fence.adminUrl);
    await admin.query(
      `CREATE TABLE "${table}" (seq bigserial PRIMARY KEY, token bigint NOT NULL, pid int NOT NULL, t text NOT NULL)`,
    );
    await admin.end();
  }

  const cands: Candidate[] = [];
  const deaths: { pid: number; t: string }[] = [];
  const pauses: { pid: number; from: string; to: string }[] = [];
  const sqliteFile = spec.backend === "sqlite" ? b.url.slice("sqlite:".length) : "";
  const sqlite: SqlitePlan | null = isSqliteFault(spec.fault)
    ? sqlitePlan(spec.fault, rand, timing.candidates, join(sqliteFile, ".."), id)
    : null;
  const spawnOne = (i: number) => {
    const launch = sqlite?.launch[i];
    return new Candidate(
      {
        url: workerUrl(b, ttlMs),
        name,
        holder: `c${i}-${spec.seed}`,
        ttlMs,
        retryMs,
        tickMs,
        fence:
          fence.mode === "store-fence" ? { mode: fence.mode, pgUrl: fence.pgUrl, table } : fence,
        ...(launch?.txHook ? { txHook: launch.txHook } : {}),
      },
      launch,
    );
  };
  for (let i = 0; i < timing.candidates; i++) cands.push(spawnOne(i));
  const leader = () => cands.find((c) => c.leading());
  let faultAt = now();
  let healAt = now();
  let dataLostAt: bigint | undefined;
  let detail = "";
  let episodeError: string | null = null;
  let probe: { at: bigint; probed: Candidate[] } | null = null;
  // Bound of every wait for the fleet after the heal; the checker judges the
  // recovery time itself (ttl + retry + slack), this only stops the episode.
  const waitBound = 3 * (ttlMs + retryMs) + 5000;
  try {
    await must(
      "a leader whose fenced writes were accepted twice",
      () => {
        const l = leader();
        return (
          !!l &&
          l.lines.filter((x) => x.event === "wrote").length >= 2 &&
          cands.every((c) => c.has("started"))
        );
      },
      15_000,
    );
    const lead = leader()!;
    const r = () => rand();
    const shared = await runSharedFault(
      spec,
      b,
      lead,
      { who: "leader", the: "leader", stop: "resign + exit" },
      ttlMs,
      r,
      { pauses, deaths },
    );
    if (shared) {
      ({ detail, faultAt, healAt } = shared);
      if (shared.dataLostAt !== undefined) dataLostAt = shared.dataLostAt;
    } else {
      switch (spec.fault) {
        case "promote-standby": {
          const pair = b.standby;
          if (!pair) throw new Error(`${spec.backend} has no standby`);
          await pair.ensureStandby();
          await pair.waitReplayed();
          faultAt = now();
          await pair.freezeWalsender();
          const { lost, lostToken, pauseFrom } = await loseTermOnPrimary({
            lead,
            cands,
            faultAt,
            ttlMs,
            retryMs,
            deaths,
            must,
          });
          const t0 = Date.now();
          // The lost term's data goes with the primary: its holder's refusals
          // after this are the documented async limit, not a fencing failure.
          dataLostAt = now();
          await pair.crashPrimary();
          await pair.promote();
          healAt = now();
          const promotedMs = Date.now() - t0;
          const heal = healAt;
          try {
            await must(
              "a term on the promoted server while the lost term's holder is paused",
              () => cands.some((c) => c !== lead && c !== lost && c.has("lead-start", heal)),
              2 * (ttlMs + retryMs) + 2000,
            );
          } finally {
            lost.proc.kill("SIGCONT");
            lost.paused = false;
            pauses.push({ pid: lost.pid, from: pauseFrom.toString(), to: now().toString() });
          }
          detail = `walsender SIGSTOP, leader SIGKILL, token ${lostToken} issued on the primary only, primary crashed, standby promoted in ${promotedMs} ms`;
          break;
        }
        case "failover-primary":
        case "failover-lagging": {
          if (!b.sentinel) throw new Error(`${spec.backend} has no Sentinel group`);
          const f = await runSentinelFault({
            group: b.sentinel,
            fault: spec.fault,
            lead,
            cands,
            ttlMs,
            retryMs,
            deaths,
            pauses,
            must,
          });
          ({ faultAt, healAt, detail } = f);
          if (f.dataLostAt !== undefined) dataLostAt = f.dataLostAt;
          break;
        }
        default: {
          if (!sqlite) throw new Error(`${spec.fault} needs the sqlite backend`);
          const f = await runSqliteFault({
            plan: sqlite,
            r,
            ttlMs,
            dbFile: sqliteFile,
            cands,
            lead,
            deaths,
            pauses,
          });
          ({ detail, faultAt, healAt } = f);
          break;
        }
      }
    }
    // Recovery: a leader ticks after the heal (the checker judges how soon).
    const heal = healAt;
    await must(
      "leader work after the heal",
      () => cands.some((c) => c.has("tick", heal)),
      waitBound,
    );
    // Then probe until the fleet agrees: one leader whose term ticked after
    // the heal, named by every follower. A term may still end after that first
    // work (a store that lost its data tells the old leader at its next
    // renewal), so agreement, not a fixed sleep, decides when to probe.
    const deadline = Date.now() + waitBound;
    for (;;) {
      const round = await probeRound(cands, heal, 2000);
      if (round.agrees) {
        probe = round;
        break;
      }
      if (Date.now() > deadline) {
        probe = round;
        throw new Error(
          `timed out after ${waitBound} ms waiting for one leader that ticked after the heal, named by every follower`,
        );
      }
      await sleep(retryMs); // between probe rounds: a bounded poll
    }
  } catch (e) {
    episodeError = (e as Error).message;
  }
  for (const c of cands) if (c.paused) c.proc.kill("SIGCONT");
  if (!probe) {
    const round = await probeRound(cands, healAt, 2000);
    probe = round;
  }
  const { probed } = probe;
  const probeAt = probe.at;
  // Graceful stop of everyone; SIGKILL after 5 s.
  await stopWorkers(cands, 5000);

  const lines = cands.flatMap((c) => c.lines);
  let writes: FencedWrite[] = [];
  if (fence.mode === "store-fence") {
    writes = await takeFenceRows<FencedWrite>(
      fence.adminUrl,
      table,
      "seq::int AS seq, token::text AS token, pid, t",
    );
  } else {
    let last: string | null = null;
    try {
      const store = await openStore(b.url);
      try {
        last = (await store.getFenced(name, CHAIN_KEY))?.value ?? null;
      } finally {
        await store.close();
      }
    } catch (e) {
      episodeError ??= `could not read the last fenced write: ${(e as Error).message}`;
    }
    // A failover to a replica that missed writes: those writes are not in the
    // store's history, and the chain goes on from the replica's last value.
    // Behind Sentinel that holds in any episode: on a loaded machine the
    // sentinels may fail over on their own (a primary slow to answer their
    // PINGs), and what the demoted primary acknowledged meanwhile is
    // discarded when it resyncs. On one server, every acknowledged write of
    // the compare-and-set chain is an ancestor of its last value.
    const lost =
      b.sentinel && (dataLostAt !== undefined || spec.backend === "redis-sentinel")
        ? lostChainValues(lines, last)
        : new Set<string>();
    if (lost.size > 0) detail += `; ${lost.size} fenced write(s) lost with the primary`;
    writes = chainWrites(lines, last, lost);
  }
  if (spec.backend === "sqlite") {
    // Nothing corrupted, whatever the fault did to the file.
    const ok = await integrity(sqliteFile).catch((e: Error) => `could not check: ${e.message}`);
    if (ok !== "ok") episodeError ??= `PRAGMA integrity_check: ${ok}`;
  }

  if (process.env.CHAOS_DEBUG)
    for (const c of cands)
      for (const l of c.lines)
        if (l.event !== "log" && l.event !== "renewed")
          process.stderr.write(`${JSON.stringify(l)}\n`);
  const history: EpisodeHistory = {
    backend: spec.backend,
    fault: spec.fault,
    seed: spec.seed,
    ttlMs,
    retryMs,
    tickMs,
    // A promoted async standby does not know the lost term: its holder may
    // trust it while the next term runs, up to one ttl (the documented limit,
    // docs/stores/postgres.md); fenced work must still stay ordered.
    // The same for a Redis replica promoted by Sentinel (docs/stores/redis.md).
    safetyBoundMs:
      spec.fault === "promote-standby" || isSentinelFault(spec.fault)
        ? Math.max(timing.safetyBoundMs, ttlMs)
        : timing.safetyBoundMs,
    // A tick interval, plus a server's own restart (it is "healed" when it accepts connections).
    // Restarting an etcd member can restart the raft leader: electing a new one
    // takes up to two election timeouts, and the new leader extends every etcd
    // lease by one more (lessor Promote), so a dead holder's lease outlives the
    // ttl by up to three election timeouts. The same holds for the
    // etcd-cluster faults that stop and restart members.
    recoverySlackMs:
      tickMs +
      250 +
      ((spec.backend === "etcd" && spec.fault === "restart-server") ||
      spec.fault === "kill-raft-leader" ||
      spec.fault === "rolling-restart"
        ? 3 * ETCD_ELECTION_TIMEOUT_MS
        : 0),
    // Once per backoff step: never more than one identical line per retry interval.
    logLinesPerMinute: Math.ceil(60_000 / retryMs),
    lines,
    writes,
    faultAt: faultAt.toString(),
    healAt: healAt.toString(),
    probeAt: probeAt.toString(),
    deaths,
    pauses,
    probed: probed.map((c) => c.pid),
    ...(dataLostAt !== undefined ? { dataLostAt: dataLostAt.toString() } : {}),
  };
  const result = checkEpisode(history);
  for (const c of cands) {
    const crash = c.crashReport();
    if (crash !== undefined) result.violations.push(crash);
  }
  if (episodeError) result.violations.unshift(`episode error: ${episodeError}`);
  // TENURE_CHAOS_DUMP=DIR keeps the history of every failed episode (to debug a replay).
  const dumpDir = process.env.TENURE_CHAOS_DUMP;
  if (dumpDir && result.violations.length > 0) {
    mkdirSync(dumpDir, { recursive: true });
    writeFileSync(
      join(dumpDir, `${spec.backend}-${spec.fault}-${spec.seed}.json`),
      JSON.stringify(history, null, 1),
    );
  }
  const failed = result.violations.length > 0;
  return {
    ...result,
    detail,
    durationMs: Date.now() - started,
    replay: `node dist/test/chaos/cli.js --replay ${spec.backend}:${spec.fault}:${spec.seed}`,
    ...(failed ? { stderr: cands.map((c) => c.stderr.slice(0, 4000)).join("\n---\n") } : {}),
  };
}
