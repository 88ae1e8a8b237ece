/**
 * Tenure benchmarks (issue 6): locks vs peer libraries, failover, scale and
 * each server's physical floor, all in one run on local servers. The lock
 * peers of one server and its floor run interleaved in short rounds in one
 * child process (issue 13: noise falls on all of them alike).
 *
 *   node dist/bench/run.js [--smoke] [--only redis,postgres,etcd,sqlite]
 *                          [--parts floor,locks,failover,scale] [--out DIR] [--no-doc]
 *
 * Writes bench/results/<date>.json and docs/BENCHMARKS.md (+ an SVG chart).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { type FailoverConfig, type FailoverResult, runFailover } from "./failover.js";
import { type GroupsResult, runGroups } from "./groups.js";
import { bigintSafe, etcdHosts, pkgVersion, ROOT, runChild, serviceUrls } from "./lib/common.js";
import { type OwnEtcd, startEtcd } from "./lib/etcd.js";
import { FLOORS, LOCK_PEERS } from "./lib/peers.js";
import type { LockInput, LockOutput } from "./locks.js";
import { writeReport } from "./report.js";
import type { ScaleInput, ScaleOutput } from "./scale.js";

const SERVERS = ["redis", "postgres", "etcd", "sqlite"] as const;
/** The scale part also runs on the memory store, always (the renewal path without a network). */
const SCALE_BACKENDS = ["memory", ...SERVERS] as const;
/** Largest N of the full scale run per backend (100 000 where the server digests it in a run). */
const SCALE_MAX_N: Record<string, number> = {
  memory: 100_000,
  redis: 100_000,
  postgres: 100_000,
  etcd: 10_000,
  sqlite: 10_000,
};
const PARTS = ["floor", "locks", "failover", "scale", "groups"] as const;

export interface BenchResults {
  date: string;
  smoke: boolean;
  durationS: number;
  machine: Record<string, unknown>;
  servers: Record<string, string>;
  libraries: Record<string, string>;
  settings: Record<string, unknown>;
  /** The floor probe of each server (measured as one of its interleaved peers). */
  floor: Array<{ server: string; id?: string; command: string }>;
  /** Every lock peer, described. */
  peers: Array<{ peer: string; server: string; lib: string; version: string; how: string }>;
  /** One interleaved run per server: its peers and its floor, round by round. */
  locks: Array<{ server: string; out?: LockOutput; error?: string }>;
  failover: Array<FailoverResult & { error?: string }>;
  scale: Array<{ backend: string; n: number; out?: ScaleOutput; error?: string }>;
  /** Groups: P partitions over member processes (bench/groups.ts); absent in older results. */
  groups?: GroupsResult[];
  skipped: string[];
}

function parseArgs(argv: string[]) {
  const a = {
    smoke: false,
    only: [...SERVERS] as string[],
    parts: [...PARTS] as string[],
    out: join(ROOT, "bench", "results"),
    doc: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--smoke") a.smoke = true;
    else if (arg === "--only")
      a.only = val()
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    else if (arg === "--parts")
      a.parts = val()
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    else if (arg === "--out") a.out = val();
    else if (arg === "--no-doc") a.doc = false;
    else
      throw new Error(
        `unknown argument ${arg}; accepted: --smoke --only ${SERVERS.join(",")} --parts ${PARTS.join(",")} --out DIR --no-doc`,
      );
  }
  for (const s of a.only)
    if (!(SERVERS as readonly string[]).includes(s))
      throw new Error(`--only: unknown backend "${s}"; accepted: ${SERVERS.join(", ")}`);
  for (const p of a.parts)
    if (!(PARTS as readonly string[]).includes(p))
      throw new Error(`--parts: unknown part "${p}"; accepted: ${PARTS.join(", ")}`);
  return a;
}

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

async function serverVersions(
  only: string[],
  urls: ReturnType<typeof serviceUrls>,
): Promise<Record<string, string>> {
  const v: Record<string, string> = {};
  const safe = async (k: string, f: () => Promise<string>) => {
    try {
      v[k] = await f();
    } catch (e) {
      v[k] = `unavailable (${(e as Error).message})`;
    }
  };
  if (only.includes("redis"))
    await safe("redis", async () => {
      const { Redis } = await import("ioredis");
      const r = new Redis(urls.redis, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await r.connect();
      const info = await r.info("server");
      r.disconnect();
      return /redis_version:(\S+)/.exec(info)?.[1] ?? "?";
    });
  if (only.includes("postgres"))
    await safe("postgres", async () => {
      const pg = (await import("pg")).default;
      const c = new pg.Client({ connectionString: urls.postgres });
      await c.connect();
      const r = await c.query<{ server_version: string }>("SHOW server_version");
      await c.end();
      return r.rows[0]?.server_version ?? "?";
    });
  if (only.includes("etcd") && urls.etcd)
    await safe("etcd", async () => {
      const r = await fetch(`${etcdHosts(urls.etcd as string)[0]}/version`);
      return ((await r.json()) as { etcdserver: string }).etcdserver;
    });
  if (only.includes("sqlite"))
    await safe("sqlite", async () => {
      const { default: Database } = await import("better-sqlite3");
      const db = new Database(":memory:");
      const r = db.prepare("select sqlite_version() as v").get() as { v: string };
      db.close();
      return r.v;
    });
  return v;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), "tenure-bench-"));
  let ownEtcd: OwnEtcd | null = null;
  const skipped: string[] = [];
  try {
    let urls = serviceUrls();
    if (args.only.includes("etcd") && !urls.etcd) {
      try {
        ownEtcd = await startEtcd();
        process.env.TENURE_BENCH_ETCD_URL = ownEtcd.url;
        urls = serviceUrls();
        log(`started a throwaway etcd at ${ownEtcd.url}`);
      } catch (e) {
        skipped.push(`etcd: ${(e as Error).message}`);
        args.only = args.only.filter((s) => s !== "etcd");
      }
    }
    const sqlitePath = join(tmp, "bench.db");
    const S = args.smoke;
    const settings = {
      lockTtlMs: 10_000,
      roundMs: S ? 50 : 200,
      rounds: S ? 3 : 30,
      warmupRounds: 1,
      clients: 8,
      retryMinMs: 1,
      retryMaxMs: 3,
      failoverTtlMs: 2000,
      clientGoRetryMs: Math.round((2000 * 2) / 15),
      failoverReps: S ? 1 : Number(process.env.TENURE_BENCH_FAILOVER_REPS ?? 3),
      scaleNs: S ? [1, 10, 100] : [1, 100, 1000, 10_000, 100_000],
      scaleTtlMs: S ? 3000 : 6000,
      scaleWindowMs: S ? 1500 : 6000,
      groupPartitions: S ? 32 : 256,
      groupTtlMs: S ? 2000 : 6000,
    };
    const libraries: Record<string, string> = {};
    for (const p of [
      "tenure",
      "redlock",
      "@sesamecare-oss/redlock",
      "redis-semaphore",
      "advisory-lock",
      "etcd3",
      "ioredis",
      "pg",
      "postgres",
      "better-sqlite3",
    ])
      libraries[p] = p === "tenure" ? pkgVersion("..") : pkgVersion(p);
    try {
      libraries.tenure = `${JSON.parse(execFileSync("node", ["-p", `JSON.stringify(require(${JSON.stringify(join(ROOT, "package.json"))}).version)`]).toString())} (${execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]).toString().trim()})`;
    } catch {
      /* keep */
    }
    const res: BenchResults = {
      date: new Date().toISOString(),
      smoke: S,
      durationS: 0,
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? "?",
        memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
        os: `${process.platform} ${release()}`,
        node: process.version,
        loadavgAtStart: loadavg().map((x) => Math.round(x * 100) / 100),
      },
      servers: await serverVersions(args.only, urls),
      libraries,
      settings,
      floor: [],
      peers: [],
      locks: [],
      failover: [],
      scale: [],
      groups: [],
      skipped,
    };
    const floors = FLOORS.filter((f) => args.only.includes(f.server));
    res.floor = floors.map((f) => ({
      server: f.server,
      ...(f.id ? { id: f.id } : {}),
      command: f.command,
    }));
    const runLocks = args.parts.includes("locks");
    if (runLocks)
      res.peers = LOCK_PEERS.filter((p) => args.only.includes(p.server)).map((p) => ({
        peer: p.id,
        server: p.server,
        lib: p.lib,
        version: p.lib === "tenure" ? (libraries.tenure ?? "?") : pkgVersion(p.lib),
        how: p.how,
      }));
    if (runLocks || args.parts.includes("floor")) {
      for (const server of SERVERS) {
        if (!args.only.includes(server)) continue;
        const peers = runLocks
          ? LOCK_PEERS.filter((p) => p.server === server).map((p) => p.id)
          : [];
        const floorCount = floors.filter((f) => f.server === server).length;
        const floor = floorCount > 0;
        const input: LockInput = {
          server,
          peers,
          floor,
          ttlMs: settings.lockTtlMs,
          roundMs: settings.roundMs,
          rounds: settings.rounds,
          warmupRounds: settings.warmupRounds,
          clients: settings.clients,
          retryMinMs: settings.retryMinMs,
          retryMaxMs: settings.retryMaxMs,
          sqlitePath,
        };
        const turns = (peers.length + floorCount) * (input.rounds + input.warmupRounds) * 2;
        log(`locks ${server}: ${peers.concat(floor ? ["floor"] : []).join(", ")} interleaved`);
        const r = await runChild<LockOutput>("locks.js", input, 60_000 + turns * input.roundMs * 3);
        res.locks.push({
          server,
          ...(r.ok
            ? { out: r.result }
            : { error: `${r.error}${r.stderr ? ` ${r.stderr.slice(-300)}` : ""}` }),
        });
      }
    }

    if (args.parts.includes("failover")) {
      const backendUrl: Record<string, string | undefined> = {
        sqlite: `sqlite:${sqlitePath}`,
        postgres: urls.postgres,
        redis: urls.redis,
        etcd: urls.etcd,
      };
      const ttl = settings.failoverTtlMs;
      const cfgs: FailoverConfig[] = [];
      for (const b of SERVERS) {
        if (!args.only.includes(b) || !backendUrl[b]) continue;
        cfgs.push({
          id: `tenure-${b}`,
          backend: b,
          mode: "tenure",
          url: backendUrl[b] as string,
          ttlMs: ttl,
          retryMs: Math.round(ttl / 5),
          describe:
            "Tenure elector, defaults for the ttl (renew ttl/3, retry ttl/5, release notifications where the store has them)",
        });
        cfgs.push({
          id: `clientgo-${b}`,
          backend: b,
          mode: "clientgo",
          url: backendUrl[b] as string,
          ttlMs: ttl,
          retryMs: settings.clientGoRetryMs,
          describe:
            "client-go leaderelection defaults scaled to the ttl (15 s lease / 2 s retry → ttl / ttl·2/15), polling only, release on cancel, on the Tenure store",
        });
      }
      if (args.only.includes("postgres") && urls.pgbouncer) {
        // Queries through the pooler, LISTEN on a direct connection beside it (tenure_listen).
        const u = new URL(urls.pgbouncer);
        u.searchParams.set("tenure_pooler", "transaction");
        u.searchParams.set("tenure_listen", urls.postgres);
        cfgs.push({
          id: "tenure-pgbouncer",
          backend: "postgres",
          mode: "tenure",
          url: u.toString(),
          ttlMs: ttl,
          retryMs: Math.round(ttl / 5),
          describe:
            "Tenure elector through PgBouncer (transaction mode), release notifications over a direct LISTEN connection (`tenure_listen`)",
        });
      }
      if (args.only.includes("etcd") && urls.etcd)
        cfgs.push({
          id: "etcd3-election",
          backend: "etcd",
          mode: "etcd-election",
          url: urls.etcd,
          ttlMs: ttl,
          retryMs: 0,
          describe:
            "etcd3 Election.campaign (etcd lease ttl in whole seconds, keepalive, watch on the previous key), resign() on stop",
        });
      const runOne = async (c: FailoverConfig) => {
        log(`failover ${c.id} ×${settings.failoverReps}`);
        return runFailover(c, settings.failoverReps);
      };
      // Smoke: all at once (numbers are not the point); full: one at a time.
      const out = S ? await Promise.all(cfgs.map(runOne)) : [];
      if (!S) for (const c of cfgs) out.push(await runOne(c));
      res.failover = out;
    }

    if (args.parts.includes("scale")) {
      const backendUrl: Record<string, string | undefined> = {
        memory: "memory:",
        sqlite: `sqlite:${join(tmp, "scale.db")}`,
        postgres: urls.postgres,
        redis: urls.redis,
        etcd: urls.etcd,
      };
      for (const b of SCALE_BACKENDS) {
        if ((b !== "memory" && !args.only.includes(b)) || !backendUrl[b]) continue;
        for (const n of settings.scaleNs) {
          if (n > (SCALE_MAX_N[b] ?? 0)) continue;
          log(`scale ${b} N=${n}`);
          const input: ScaleInput = {
            url: backendUrl[b] as string,
            n,
            ttlMs: settings.scaleTtlMs,
            windowMs: settings.scaleWindowMs,
            startTimeoutMs: S ? 20_000 : n > 10_000 ? 180_000 : 60_000,
          };
          const r = await runChild<ScaleOutput>(
            "scale.js",
            input,
            input.startTimeoutMs + input.windowMs + 40_000,
            ["--expose-gc", ...(n > 10_000 ? ["--max-old-space-size=8192"] : [])],
          );
          res.scale.push({
            backend: b,
            n,
            ...(r.ok
              ? { out: r.result }
              : { error: `${r.error}${r.stderr ? ` ${r.stderr.slice(-300)}` : ""}` }),
          });
        }
      }
    }

    if (args.parts.includes("groups")) {
      // Redis: a db of its own. list() scans the whole db, and the scale part leaves up to
      // 100 000 leases behind in the default one (see docs/groups.md, "Measured").
      const redis = new URL(urls.redis);
      redis.pathname = "/7";
      const backendUrl: Record<string, string | undefined> = {
        sqlite: `sqlite:${join(tmp, "groups.db")}`,
        postgres: urls.postgres,
        redis: redis.toString(),
        etcd: urls.etcd,
      };
      for (const b of SERVERS) {
        if (!args.only.includes(b) || !backendUrl[b]) continue;
        log(`groups ${b}: ${settings.groupPartitions} partitions`);
        res.groups!.push(
          await runGroups({
            backend: b,
            url: backendUrl[b] as string,
            partitions: settings.groupPartitions,
            ttlMs: settings.groupTtlMs,
          }),
        );
      }
    }

    res.durationS = Math.round((Date.now() - t0) / 1000);

    mkdirSync(args.out, { recursive: true });
    const stamp = res.date.replace(/[:.]/g, "-").replace(/-\d\d\dZ$/, "Z");
    const file = join(args.out, `${stamp}${S ? "-smoke" : ""}.json`);
    writeFileSync(file, `${JSON.stringify(res, bigintSafe, 2)}\n`);
    log(`results: ${file}`);
    if (args.doc) {
      const doc = writeReport(res, join(ROOT, "docs"), file);
      log(`report: ${doc}`);
    }
    const failed = [
      ...res.locks.filter((l) => l.error).map((l) => `locks ${l.server}: ${l.error}`),
      ...res.locks.flatMap((l) =>
        (l.out?.uncontended.peers ?? [])
          .filter((p) => p.error)
          .map((p) => `locks ${p.id}: ${p.error}`),
      ),
      ...res.failover.flatMap((f) => f.errors.map((e) => `failover ${f.id}: ${e}`)),
      ...res.scale.filter((s) => s.error).map((s) => `scale ${s.backend} N=${s.n}: ${s.error}`),
      ...(res.groups ?? []).filter((g) => g.error).map((g) => `groups ${g.backend}: ${g.error}`),
    ];
    for (const f of failed) log(`FAILED ${f}`);
    for (const s of skipped) log(`SKIPPED ${s}`);
    log(`done in ${res.durationS} s`);
    process.exitCode = failed.length ? 1 : 0;
  } finally {
    if (ownEtcd) await ownEtcd.stop().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
}

main()
  .catch((e) => {
    log(`error: ${(e as Error).message}`);
    process.exitCode = 2;
  })
  .finally(() => process.exit());
