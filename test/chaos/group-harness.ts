/**
 * Group episodes of the chaos suite: `members` processes (group-worker.ts)
 * each run `createGroup({ partitions })` on one backend, behind the same fault
 * proxies and throwaway servers as the single-lease episodes (harness.ts);
 * one fault is injected on one seeded member (process faults) or on the
 * store (network, server, storage, cluster faults), healed, the fleet probed
 * until it is balanced again, stopped, and the history checked per partition
 * (group-checker.ts).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openStore } from "../../src/index.js";
import { ETCD_ELECTION_TIMEOUT_MS } from "../helpers/chaos-servers.js";
import { CHAIN_KEY, parseChainValue } from "./chain.js";
import type { EpisodeMetrics } from "./checker.js";
import {
  type Cand,
  integrity,
  isSqliteFault,
  type Launch,
  runSqliteFault,
  type SqlitePlan,
  sqlitePlan,
} from "./faults-sqlite.js";
import {
  checkGroupEpisode,
  etcdExpirySlackMs,
  type GroupHistory,
  type GroupLine,
  type PartitionWrite,
} from "./group-checker.js";
import type { GroupWorkerConfig } from "./group-worker.js";
import {
  adminClient,
  type BackendName,
  type ChaosEnv,
  type ChaosTiming,
  type EpisodeOutcome,
  type EpisodeSpec,
  type FaultKind,
  faultsFor,
  must,
  rng,
  runSharedFault,
  stopWorkers,
  takeFenceRows,
  workerUrl,
} from "./harness.js";
import { WorkerProcess } from "./worker-process.js";

/** Backends a group episode runs on (postgres-standby and redis-sentinel: not yet, see docs/CHAOS.md). */
export const GROUP_BACKENDS: readonly BackendName[] = [
  "sqlite",
  "postgres",
  "pgbouncer",
  "redis",
  "etcd",
  "etcd-cluster",
];

/** The faults of a group episode on `b`: every fault of the backend except the failovers of a replicated topology. */
export function groupFaultsFor(b: BackendName): FaultKind[] {
  if (!GROUP_BACKENDS.includes(b)) return [];
  return faultsFor(b);
}

/** Shape of a group episode. */
export interface GroupTiming {
  partitions: number;
  members: number;
  /** Tick of each owned partition (one fenced write each). */
  tickMs: number;
}

export const DEFAULT_GROUP_TIMING: GroupTiming = Object.freeze({
  partitions: 64,
  members: 4,
  tickMs: 250,
});

const WORKER = fileURLToPath(new URL("./group-worker.js", import.meta.url));
const now = () => process.hrtime.bigint();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One member process and what it printed. */
class Member extends WorkerProcess<GroupLine> implements Cand {
  constructor(cfg: GroupWorkerConfig, launch?: Launch) {
    super(WORKER, cfg, launch);
  }
  /** Owns a partition (by its last probe answer). */
  leading(): boolean {
    const s = this.lines.filter((l) => l.event === "state").at(-1);
    return this.alive && (s?.owned?.length ?? 0) > 0;
  }
}

/** One probe round: SIGUSR2 to every live member; balanced when every partition has exactly one owner and each owns ⌊P/M⌋ or ⌈P/M⌉. */
async function probeRound(
  members: readonly Member[],
  partitions: number,
  answerMs: number,
): Promise<{ at: bigint; probed: Member[]; balanced: boolean }> {
  const probed = members.filter((c) => c.alive && !c.stopping && !c.paused);
  const at = now();
  for (const c of probed) c.proc.kill("SIGUSR2");
  const answer = (c: Member) =>
    c.lines.filter((l) => l.event === "state" && BigInt(l.t) >= at).at(-1);
  try {
    await must("probe answers", () => probed.every((c) => answer(c) || !c.alive), answerMs);
  } catch {
    return { at, probed, balanced: false };
  }
  const m = probed.length;
  const owners = new Array<number>(partitions).fill(0);
  let balanced = m > 0;
  for (const c of probed) {
    const owned = answer(c)?.owned ?? [];
    if (owned.length < Math.floor(partitions / m) || owned.length > Math.ceil(partitions / m))
      balanced = false;
    for (const p of owned) owners[p] = (owners[p] ?? 0) + 1;
  }
  return { at, probed, balanced: balanced && owners.every((n) => n === 1) };
}

/** Every partition had a fenced write accepted of a tick that started at or after `since` (as the checker counts them). */
function everyPartitionWrote(members: readonly Member[], partitions: number, since: bigint) {
  const seen = new Set<number>();
  for (const c of members)
    for (const l of c.lines)
      if (l.event === "wrote" && l.p !== undefined && l.s && BigInt(l.s) >= since) seen.add(l.p);
  return seen.size === partitions;
}

/** The accepted writes of every partition's `put-fenced` chain (see harness.ts chainWrites). */
function chainWrites(lines: readonly GroupLine[], last: (string | null)[]): PartitionWrite[] {
  const values = new Map<number, Set<string>>();
  const add = (p: number, v: string) => {
    const s = values.get(p) ?? new Set<string>();
    s.add(v);
    values.set(p, s);
  };
  for (const l of lines as readonly (GroupLine & { value?: string; prev?: string | null })[]) {
    if (l.p === undefined) continue;
    if (l.event === "wrote" && l.value) add(l.p, l.value);
    if (typeof l.prev === "string") add(l.p, l.prev);
  }
  last.forEach((v, p) => {
    if (v !== null) add(p, v);
  });
  const out: PartitionWrite[] = [];
  for (const [part, vs] of values)
    for (const v of vs) {
      const c = parseChainValue(v);
      if (!c) throw new Error(`partition ${part}'s chain holds ${JSON.stringify(v)}`);
      out.push({ part, seq: Number(c.seq), token: c.token, pid: c.pid, t: c.t });
    }
  return out;
}

let episodeCounter = 0;

/** Runs one group episode and checks it. */
export async function runGroupEpisode(
  env: ChaosEnv,
  spec: EpisodeSpec,
  timing: ChaosTiming,
  gt: GroupTiming = DEFAULT_GROUP_TIMING,
): Promise<EpisodeOutcome & { metrics: EpisodeMetrics }> {
  const started = Date.now();
  const rand = rng(spec.seed);
  const b = await env.backend(spec.backend);
  const { ttlMs, retryMs } = timing;
  const { partitions, tickMs } = gt;
  const id = `${process.pid}_${++episodeCounter}_${spec.seed}`;
  const table = `chaos_g_${id}`;
  const groupName = `chaos-g-${spec.backend}-${id}`.replace(/_/g, "-");
  const fence = b.fence;
  if (fence.mode === "store-fence") {
    const admin = await adminClient(fence.adminUrl);
    await admin.query(
      `CREATE TABLE "${table}" (seq bigserial PRIMARY KEY, part int NOT NULL, token bigint NOT NULL, pid int NOT NULL, t text NOT NULL)`,
    );
    await admin.end();
  }

  const sqliteFile = spec.backend === "sqlite" ? b.url.slice("sqlite:".length) : "";
  const sqlite: SqlitePlan | null = isSqliteFault(spec.fault)
    ? sqlitePlan(spec.fault, rand, gt.members, join(sqliteFile, ".."), id)
    : null;
  const members: Member[] = [];
  for (let i = 0; i < gt.members; i++) {
    const launch = sqlite?.launch[i];
    members.push(
      new Member(
        {
          url: workerUrl(b, ttlMs),
          group: groupName,
          holder: `m${i}-${spec.seed}`,
          partitions,
          ttlMs,
          tickMs,
          fence:
            fence.mode === "store-fence" ? { mode: fence.mode, pgUrl: fence.pgUrl, table } : fence,
          ...(launch?.txHook ? { txHook: launch.txHook } : {}),
        },
        launch,
      ),
    );
  }
  const deaths: { pid: number; t: string }[] = [];
  const pauses: { pid: number; from: string; to: string }[] = [];
  let faultAt = now();
  let healAt = now();
  let dataLostAt: bigint | undefined;
  /** End of a fault's window in which the harness sends no probe (clock-jump). */
  let windowEnd: bigint | undefined;
  let detail = "";
  let episodeError: string | null = null;
  let probe: { at: bigint; probed: Member[]; balanced: boolean } | null = null;
  /** The first probe of the balanced ones in a row that ended the episode. */
  let balancedSince: bigint | undefined;
  const waitBound = 3 * (ttlMs + retryMs) + 10_000;
  try {
    // Balanced, and every partition's fenced write accepted once.
    const deadline = Date.now() + 30_000;
    // SIGUSR2 kills a worker that has not installed its handler yet: probe only once all started.
    await must("every member started", () => members.every((c) => c.has("started")), 30_000);
    for (;;) {
      const round = await probeRound(members, partitions, 2000);
      if (
        round.balanced &&
        round.probed.length === gt.members &&
        members.every((c) => c.has("started")) &&
        everyPartitionWrote(members, partitions, 0n)
      )
        break;
      if (Date.now() > deadline)
        throw new Error("timed out after 30000 ms waiting for the group to start balanced");
      await sleep(retryMs); // between probe rounds: a bounded poll
    }
    // The member the process faults hit: one that owns partitions (they all do once balanced).
    const lead = members[Math.floor(rand() * members.length)]!;
    const r = () => rand();
    const shared = await runSharedFault(
      spec,
      b,
      lead,
      { who: "a member", the: "member", stop: "group.stop + exit" },
      ttlMs,
      r,
      { pauses, deaths },
    );
    if (shared) {
      ({ detail, faultAt, healAt } = shared);
      if (shared.dataLostAt !== undefined) dataLostAt = shared.dataLostAt;
    } else {
      if (!sqlite) throw new Error(`${spec.fault} has no group episode on ${spec.backend}`);
      ({ detail, faultAt, healAt, windowEnd } = await runSqliteFault({
        plan: sqlite,
        r,
        ttlMs,
        dbFile: sqliteFile,
        cands: members,
        lead,
        deaths,
        pauses,
      }));
    }
    // Probe until the fleet is balanced again and every partition was written after the heal.
    const heal = healAt;
    const deadline2 = Date.now() + waitBound;
    for (;;) {
      const round = await probeRound(members, partitions, 2000);
      probe = round;
      // Balanced since the first of the balanced probes in a row: the probes go on until every
      // partition also wrote after the heal (judged on its own bound), which can come later.
      balancedSince = round.balanced ? (balancedSince ?? round.at) : undefined;
      if (round.balanced && everyPartitionWrote(members, partitions, heal)) break;
      if (Date.now() > deadline2)
        throw new Error(
          `timed out after ${waitBound} ms waiting for a balanced fleet with every partition written after the heal`,
        );
      await sleep(retryMs); // between probe rounds: a bounded poll
    }
  } catch (e) {
    episodeError = (e as Error).message;
  }
  for (const c of members) if (c.paused) c.proc.kill("SIGCONT");
  probe ??= await probeRound(members, partitions, 2000);
  await stopWorkers(members, 10_000);

  const lines = members.flatMap((c) => c.lines);
  let writes: PartitionWrite[] = [];
  if (fence.mode === "store-fence") {
    writes = await takeFenceRows<PartitionWrite>(
      fence.adminUrl,
      table,
      "part, seq::int AS seq, token::text AS token, pid, t",
    );
  } else {
    const last: (string | null)[] = new Array(partitions).fill(null);
    try {
      const store = await openStore(b.url);
      try {
        for (let p = 0; p < partitions; p++)
          last[p] = (await store.getFenced(`${groupName}/p/${p}`, CHAIN_KEY))?.value ?? null;
      } finally {
        await store.close();
      }
    } catch (e) {
      episodeError ??= `could not read the last fenced writes: ${(e as Error).message}`;
    }
    writes = chainWrites(lines, last);
  }
  if (spec.backend === "sqlite") {
    const ok = await integrity(sqliteFile).catch((e: Error) => `could not check: ${e.message}`);
    if (ok !== "ok") episodeError ??= `PRAGMA integrity_check: ${ok}`;
  }
  // The membership settles when the fault's last hand on it is done: the heal, a resume, a death.
  // The time to balance is how long the probes took to find the fleet balanced, so it counts
  // from when they could start: not before the end of a window the fault runner spends without
  // probing (clock-jump lets the jumped clock run 1.5–2.5 ttl; counted from the jump, a fleet
  // that never left balance measured that sleep: group:sqlite:clock-jump:2017512979 was
  // "balanced 2511 ms" after a 2490 ms window, bound 2500). Ownership during that window is
  // still judged from the heal (the jump): no partition may go unticked longer than the bound.
  let settle = healAt;
  if (windowEnd !== undefined && windowEnd > settle) settle = windowEnd;
  for (const p of pauses) if (BigInt(p.to) > settle) settle = BigInt(p.to);
  for (const d of deaths) if (BigInt(d.t) > settle) settle = BigInt(d.t);
  const etcdSlack =
    ((spec.backend === "etcd" && spec.fault === "restart-server") ||
    spec.fault === "kill-raft-leader" ||
    spec.fault === "rolling-restart"
      ? 3 * ETCD_ELECTION_TIMEOUT_MS
      : 0) + etcdExpirySlackMs(spec.backend, spec.fault);
  const history: GroupHistory = {
    backend: spec.backend,
    fault: `group/${spec.fault}`,
    seed: spec.seed,
    partitions,
    ttlMs,
    retryMs,
    tickMs,
    safetyBoundMs: timing.safetyBoundMs,
    recoverySlackMs: 250 + etcdSlack,
    balanceBoundMs: 2 * ttlMs + tickMs + 250 + etcdSlack,
    lines,
    writes,
    faultAt: faultAt.toString(),
    healAt: healAt.toString(),
    settleAt: settle.toString(),
    probeAt: probe.at.toString(),
    ...(balancedSince !== undefined ? { balancedAt: balancedSince.toString() } : {}),
    deaths,
    pauses,
    probed: probe.probed.map((c) => c.pid),
    ...(dataLostAt !== undefined ? { dataLostAt: dataLostAt.toString() } : {}),
  };
  const result = checkGroupEpisode(history);
  for (const c of members) {
    const crash = c.crashReport();
    if (crash !== undefined) result.violations.push(crash);
  }
  if (episodeError) result.violations.unshift(`episode error: ${episodeError}`);
  const dumpDir = process.env.TENURE_CHAOS_DUMP;
  if (dumpDir && result.violations.length > 0) {
    mkdirSync(dumpDir, { recursive: true });
    writeFileSync(
      join(dumpDir, `group-${spec.backend}-${spec.fault}-${spec.seed}.json`),
      JSON.stringify(history),
    );
  }
  const failed = result.violations.length > 0;
  return {
    ...result,
    detail: `${detail}; ${lines.length} lines, balanced ${result.metrics.balanceMs === null ? "–" : `${result.metrics.balanceMs.toFixed(0)} ms`} after settling`,
    durationMs: Date.now() - started,
    replay: `node dist/test/chaos/cli.js --replay group:${spec.backend}:${spec.fault}:${spec.seed}`,
    ...(failed ? { stderr: members.map((c) => c.stderr.slice(0, 4000)).join("\n---\n") } : {}),
  };
}
