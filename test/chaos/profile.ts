/**
 * Chaos profiles: which episodes run (seeded), and the report they produce
 * (`chaos-report.json` and a markdown summary).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import type { TestContext } from "node:test";
import { pgBin } from "../helpers/chaos-servers.js";
import { type EpisodeResult, type Summary, summarize } from "./checker.js";
import { groupFaultsFor, runGroupEpisode } from "./group-harness.js";
import {
  ALL_FAULTS,
  BACKENDS,
  type BackendName,
  type ChaosEnv,
  type ChaosTiming,
  DEFAULT_TIMING,
  type EpisodeOutcome,
  type EpisodeSpec,
  type FaultKind,
  faultsFor,
  NET_FAULTS,
  PROCESS_FAULTS,
  rng,
  runEpisode,
} from "./harness.js";

/**
 * The short CI profile: every backend, every fault kind at least once. SQLite
 * gets every process fault and every storage fault this machine can make
 * (test/chaos/faults-sqlite.ts); each networked backend gets its server faults,
 * a seeded half of the network faults and one seeded process fault, and
 * between them the networked backends cover every network fault.
 */
export function shortPlan(seed: number, backends: readonly BackendName[]): EpisodeSpec[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const out: EpisodeSpec[] = [];
  const next = () => Math.floor(r() * 2 ** 31);
  const net = [...NET_FAULTS];
  let ni = Math.floor(r() * net.length);
  for (const b of backends) {
    const faults = new Set<FaultKind>();
    if (b === "sqlite") for (const f of faultsFor(b)) faults.add(f);
    else if (b === "postgres-standby" || b === "etcd-cluster" || b === "redis-sentinel")
      for (const f of faultsFor(b)) faults.add(f);
    else {
      for (const f of faultsFor(b)) if (f === "kill-conns" || f === "restart-server") faults.add(f);
      faults.add(net[ni++ % net.length]!);
      faults.add(net[ni++ % net.length]!);
      faults.add(pick(PROCESS_FAULTS));
    }
    for (const f of faults) out.push({ backend: b, fault: f, seed: next() });
  }
  return out;
}

/**
 * The short group profile: on each backend, one seeded process fault, one
 * seeded store fault (network, server or storage) and, where the backend has
 * them, a server restart.
 */
export function groupShortPlan(seed: number, backends: readonly BackendName[]): EpisodeSpec[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const out: EpisodeSpec[] = [];
  for (const b of backends) {
    const all = groupFaultsFor(b);
    const proc = all.filter((f) => (PROCESS_FAULTS as readonly string[]).includes(f));
    const store = all.filter((f) => !proc.includes(f) && f !== "restart-server");
    const faults = new Set<FaultKind>();
    if (proc.length > 0) faults.add(pick(proc));
    if (store.length > 0) faults.add(pick(store));
    if (all.includes("restart-server")) faults.add("restart-server");
    for (const f of faults)
      out.push({ backend: b, fault: f, seed: Math.floor(r() * 2 ** 31), mode: "group" });
  }
  return out;
}

/** Which episodes a plan draws: single-lease ones, group ones (test/chaos/group-harness.ts), or both. */
export type ChaosMode = "single" | "group" | "both";

/**
 * The long profile: `episodes` draws, uniform over (backend, applicable
 * fault) for single-lease episodes and (backend, applicable fault) for group
 * episodes (`mode`, default both).
 */
export function longPlan(
  seed: number,
  episodes: number,
  backends: readonly BackendName[],
  faults?: readonly string[],
  mode: ChaosMode = "both",
): EpisodeSpec[] {
  const r = rng(seed);
  const single =
    mode === "group"
      ? []
      : backends.flatMap((b) => faultsFor(b).map((f) => ({ backend: b, fault: f })));
  const group =
    mode === "single"
      ? []
      : backends.flatMap((b) =>
          groupFaultsFor(b).map((f) => ({ backend: b, fault: f, mode: "group" as const })),
        );
  const pairs: Omit<EpisodeSpec, "seed">[] = [...single, ...group].filter(
    (p) => !faults || faults.includes(p.fault),
  );
  if (pairs.length === 0) return [];
  const out: EpisodeSpec[] = [];
  // Every pair once first (as far as the count allows), then random draws.
  for (let i = 0; i < episodes; i++) {
    const p = i < pairs.length ? pairs[i]! : pairs[Math.floor(r() * pairs.length)]!;
    out.push({ ...p, seed: Math.floor(r() * 2 ** 31) });
  }
  return out;
}

/**
 * Runs a plan with up to `concurrency` episodes at a time (different backends
 * at once, never two of the same backend: their faults would mix; an episode
 * that {@link runsAlone} with nothing beside it). Stops starting new episodes
 * once `deadline` (ms since epoch) passes.
 */
export async function runPlan(
  env: ChaosEnv,
  plan: readonly EpisodeSpec[],
  timing: ChaosTiming,
  opts: {
    concurrency?: number;
    deadline?: number;
    onResult?: (o: EpisodeOutcome, i: number) => void;
  } = {},
): Promise<EpisodeOutcome[]> {
  const results: EpisodeOutcome[] = [];
  // postgres and pgbouncer share one PostgreSQL server: never run them at once.
  await runScheduled(plan, {
    concurrency: opts.concurrency ?? 1,
    ...(opts.deadline ? { deadline: opts.deadline } : {}),
    server: (s) => (s.backend === "pgbouncer" ? "postgres" : s.backend),
    alone: runsAlone,
    run: async (s, i) => {
      const o =
        s.mode === "group"
          ? await runGroupEpisode(env, s, timing)
          : await runEpisode(env, s, timing);
      results.push(o);
      opts.onResult?.(o, i);
    },
  });
  return results;
}

/**
 * Runs `items` in order with up to `concurrency` at a time: never two with the same
 * `server` at once (their faults would mix), and an item that must run `alone` only
 * once the others have ended, with nothing started beside it. An alone item waits at
 * the head of the queue, and nothing behind it starts meanwhile (else it could wait for
 * ever). No new item starts after `deadline` (ms since the epoch).
 */
export async function runScheduled<T>(
  items: readonly T[],
  o: {
    concurrency: number;
    deadline?: number;
    server: (item: T) => string;
    alone: (item: T) => boolean;
    run: (item: T, index: number) => Promise<void>;
  },
): Promise<void> {
  const queue = items.map((s, i) => ({ s, i }));
  const busy = new Set<string>();
  let running = 0;
  let alone = false;
  /** The next item a worker may start now, or -1. */
  const next = (): number => {
    if (alone) return -1;
    const barrier = queue.findIndex((q) => o.alone(q.s));
    if (barrier === 0) return running === 0 ? 0 : -1;
    const upTo = barrier < 0 ? queue.length : barrier;
    for (let k = 0; k < upTo; k++) if (!busy.has(o.server(queue[k]!.s))) return k;
    return -1;
  };
  const workers = Array.from({ length: o.concurrency }, async () => {
    for (;;) {
      if (o.deadline && Date.now() > o.deadline) return;
      const k = next();
      if (k < 0) {
        if (queue.length === 0) return;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const { s, i } = queue.splice(k, 1)[0]!;
      const server = o.server(s);
      busy.add(server);
      running += 1;
      alone = o.alone(s);
      try {
        await o.run(s, i);
      } finally {
        busy.delete(server);
        running -= 1;
        if (o.alone(s)) alone = false;
      }
    }
  });
  await Promise.all(workers);
}

/**
 * Episodes that run with no other episode beside them: group episodes on etcd. Their own
 * load is most of this 2-core machine (4 members each making about 64 fenced writes a
 * second through etcd3's gRPC client, ≈ 20 % of a core each, plus 1–3 etcd members), so
 * with another episode beside them every process waited for a core (CPU pressure 75–85 %,
 * load average 9–17): renewals went out late and whole members' partitions expired, and
 * the liveness bounds measured the scheduler. Alone on the machine the same seeds pass.
 */
export function runsAlone(s: Pick<EpisodeSpec, "backend" | "mode">): boolean {
  return s.mode === "group" && (s.backend === "etcd" || s.backend === "etcd-cluster");
}

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .trim()
      .split("\n")[0]!;
  } catch {
    return "unknown";
  }
}

/** The machine and server versions, for the report. */
export function machine(): Record<string, string> {
  return {
    node: process.version,
    cpus: `${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    redis: version("redis-server", ["--version"]),
    postgres: version(pgBin("postgres") ?? "postgres", ["--version"]),
    pgbouncer: version("pgbouncer", ["--version"]),
    etcd: version("etcd", ["--version"]),
  };
}

export interface ChaosReport {
  readonly generatedAt: string;
  readonly seed: number;
  readonly timing: ChaosTiming;
  readonly machine: Record<string, string>;
  readonly wallMs: number;
  readonly summary: Summary[];
  readonly failures: {
    backend: string;
    fault: string;
    seed: number;
    replay: string;
    violations: string[];
  }[];
  readonly episodes: (EpisodeResult & { detail: string; durationMs: number })[];
}

export function buildReport(
  outcomes: readonly EpisodeOutcome[],
  seed: number,
  timing: ChaosTiming,
  wallMs: number,
): ChaosReport {
  return {
    generatedAt: new Date().toISOString(),
    seed,
    timing,
    machine: machine(),
    wallMs,
    summary: summarize(outcomes),
    failures: outcomes
      .filter((o) => o.violations.length > 0)
      .map((o) => ({
        backend: o.backend,
        fault: o.fault,
        seed: o.seed,
        replay: o.replay,
        violations: o.violations,
      })),
    episodes: outcomes.map(({ replay: _r, stderr: _s, ...o }) => o),
  };
}

const f1 = (x: number | null) => (x === null ? "–" : x.toFixed(0));

/** The markdown summary (docs/CHAOS.md). */
export function markdown(rep: ChaosReport, command: string): string {
  const total = rep.summary.reduce((s, x) => s + x.episodes, 0);
  const failed = rep.summary.reduce((s, x) => s + x.failed, 0);
  const sum = (f: (s: Summary) => number) => rep.summary.reduce((a, s) => a + f(s), 0);
  const max = (f: (s: Summary) => number) => rep.summary.reduce((a, s) => Math.max(a, f(s)), 0);
  const t = rep.timing;
  const lines: string[] = [
    "# Chaos summary",
    "",
    `Generated by \`${command}\` on ${rep.generatedAt.slice(0, 10)} (seed ${rep.seed}, ${total} episodes in ${(rep.wallMs / 60_000).toFixed(1)} min). Do not edit by hand.`,
    "",
    `Machine: ${rep.machine.cpus}, ${rep.machine.memory}, Node ${rep.machine.node}; ${rep.machine.postgres}; ${rep.machine.pgbouncer}; ${rep.machine.redis}; ${rep.machine.etcd}.`,
    "",
    `Each episode: ${t.candidates} candidate processes, ttl ${t.ttlMs} ms, retry ${t.retryMs} ms, leader tick every ${t.tickMs} ms; one fault, healed; every survivor probed; all stopped gracefully. Servers are throwaway ones the harness started (see "How it works").`,
    "",
    "## Invariants",
    "",
    "`test/chaos/checker.ts` checks each episode from its recorded history alone (DESIGN.md §6); any violation fails the episode:",
    "",
    "1. **Tokens.** Every term carries a larger token than every term elected before it, by any process (in election order), judged from Tenure's own tokens, not from what a fenced resource happened to accept. No token is used by two processes.",
    "2. **Fencing by the store.** Every tick makes one fenced write through the store's own fencing: `fence(tx, term)` inside a transaction on PostgreSQL and PgBouncer, `putFenced` on SQLite, Redis and etcd. The accepted writes, in commit order, never go back to an older token and never interleave two terms. A write the store refused while its writer still trusted its term (the refusal came back inside that term's trust window) is a violation; the only exception is a term elected before the store lost its data (a Redis without persistence restarted: DESIGN.md §2 promises leases and tokens only where the store is durable). A stale leader's refusals are fencing at work: they are counted, not failed.",
    "3. **Trust overlap.** Two processes never trust their leadership at once for longer than the bound (0 ms).",
    "4. **No demoted work.** Every tick runs inside its own term's trust window, before that term ended.",
    "5. **Recovery.** At the final probe exactly one live process answers as leader, in a term that ticked after the heal (an election alone is not work); every other probed process is a follower that names it. The first tick of that term after the heal comes within ttl + retry + tick + 250 ms (plus three election timeouts when an etcd member restarts), and the store accepted a fenced write after the heal.",
    "6. **No log loops.** No process logs the same warn/error line more than once per retry interval (60 000 / retry lines per minute).",
    "7. **Bounded harness waits.** Every wait of the harness is bounded and one that times out fails the episode (no leader work after the heal, no agreement at the probe, a SIGTERMed leader that does not exit). The probe is taken once the fleet agrees (a probe round every retry interval), not after a fixed sleep.",
    "",
    "## Headline",
    "",
    `- Episodes: **${total}**, failed: **${failed}**.`,
    `- Terms elected with a token not larger than an earlier term's: **${sum((s) => s.tokenRegressions)}**; tokens shared by two processes: **${sum((s) => s.tokenReuse)}**.`,
    `- Fenced writes the store accepted out of token order: **${sum((s) => s.fencedOutOfOrder)}**; refused while their writer trusted its term: **${sum((s) => s.refusedWhileTrusted)}** (refused in all, stale leaders included: ${sum((s) => s.refused)}).`,
    `- Longest time two processes both trusted their leadership (trust window, bound ${t.safetyBoundMs} ms): **${max((s) => s.maxOverlapMs).toFixed(3)} ms**.`,
    `- Leader work run by a demoted process: **${sum((s) => s.demotedWork)}**; stuck processes: **${sum((s) => s.stuck)}**.`,
    `- Largest count of identical warn/error lines of one process in one minute: **${max((s) => s.maxIdenticalLogLines)}**.`,
    "",
    "## Per backend and fault",
    "",
    "Heal → leader work: time from the heal (for a SIGKILL, SIGTERM or long SIGSTOP of the leader: from the fault itself) to the first tick, at or after the heal, of the term that leads at the final probe (an election alone is not work; work by a term that ended before the probe does not count: after a Redis restart that lost every lease, the old leader works on until its next renewal, then nobody leads until the restart guard lets a new term in); bound ttl + retry + tick + 250 ms. " +
      "Event overlap: time two processes were between their `elected` and `demoted` events at once — it includes a frozen (SIGSTOPped) leader that cannot act and whose trust window has expired, so it is informational.",
    "",
    "| backend | fault | episodes | failed | token regressions | token reuse | out-of-order fenced | refused while trusted | trust overlap ms | event overlap ms | demoted work | stuck | max identical log lines/min | heal→leader p50 / p90 / p99 / max ms |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const s of rep.summary) {
    const h = s.healToLeaderMs;
    lines.push(
      `| ${s.backend} | ${s.fault} | ${s.episodes} | ${s.failed} | ${s.tokenRegressions} | ${s.tokenReuse} | ${s.fencedOutOfOrder} | ${s.refusedWhileTrusted} | ${s.maxOverlapMs.toFixed(3)} | ${s.maxEventOverlapMs.toFixed(0)} | ${s.demotedWork} | ${s.stuck} | ${s.maxIdenticalLogLines} | ${f1(h.p50)} / ${f1(h.p90)} / ${f1(h.p99)} / ${f1(h.max)} |`,
    );
  }
  lines.push("", "## Failures", "");
  if (rep.failures.length === 0) lines.push("None.");
  for (const f of rep.failures.slice(0, 50)) {
    lines.push(`- **${f.backend} / ${f.fault}**, seed ${f.seed} — replay: \`${f.replay}\``);
    for (const v of f.violations.slice(0, 4)) lines.push(`  - ${v}`);
  }
  if (rep.failures.length > 50)
    lines.push(`- … and ${rep.failures.length - 50} more (chaos-report.json)`);
  lines.push(
    "",
    "## How it works",
    "",
    "- `test/helpers/fault-proxy.ts`: loopback TCP proxy between every candidate and its server: latency, black hole, half-open (one direction held), connection reset.",
    "- `test/helpers/chaos-servers.ts`: throwaway redis-server (no persistence), PostgreSQL (initdb/pg_ctl), PgBouncer (transaction mode) and a 3-member etcd cluster on free loopback ports; only these are restarted or have their connections killed.",
    "- `test/chaos/worker.ts`: a candidate. Logs `lead-start`/`renewed` with the end of its trust window (from `health().validForMs`, to the microsecond, rounded down), `lead-end`, each `tick`, every elector log line, and its state on SIGUSR2, stamped with CLOCK_MONOTONIC (shared by all processes on the host). Each tick makes one fenced write through the store's own fencing: for PostgreSQL and PgBouncer a row inserted inside a transaction after the store's `fence(tx, term)`; for SQLite, Redis and etcd a compare-and-set chain on one key with `putFenced` (each value names its sequence number, token and writer, so the accepted writes are known in commit order). Refused writes are logged with the time the answer came back.",
    "- `test/helpers/pg-standby.ts` (backend `postgres-standby`, fault `promote-standby`): a throwaway PostgreSQL primary with a `pg_basebackup` asynchronous standby behind a forwarder that leads to the current primary. The fault freezes the walsender, SIGKILLs the leader so another candidate starts a term on the primary only, pauses that candidate, crashes the primary, promotes the standby and moves the forwarder; the fenced writes go through the forwarder with the store's `fence(tx, term)`, so they land on whichever server is primary; the lost term's refusals after the promotion are excused like a Redis restart without persistence. Its trust-overlap bound is one ttl (an async standby can lose a term; its holder may trust it meanwhile), while fenced writes must stay ordered and no token may serve two processes.",
    "- `test/chaos/faults-sqlite.ts` (backend `sqlite`): SQLite's own storage faults. `kill-in-tx` / `stop-in-tx`: the leader SIGKILLed, or SIGSTOPped for 1.3–2.3 ttl, inside the store's own fenced write transaction (write lock held, row written, not committed; caught by a hook on the worker's connection, `test/chaos/faults-sqlite-hook.ts`). `lock-held`: a foreign process holds the write lock (`BEGIN IMMEDIATE`) for 1.5–2.5 ttl. `disk-full`: the database lives on a 16 MiB tmpfs the harness mounts; the WAL is truncated and a filler file takes every free byte (real ENOSPC) for 1.5–2.5 ttl. `clock-jump`: one candidate's wall clock jumps ±1 min … 1 day under libfaketime (monotonic untouched). `clock-skew`: one candidate's CLOCK_MONOTONIC is 1 min … 1 day ahead or behind (its own time namespace, `unshare --time`), then the leader is SIGKILLed. `PRAGMA integrity_check` must answer `ok` after every sqlite episode. A fault the machine cannot make (no tmpfs mount, no libfaketime, no time namespace) is left out of the plan.",
    "- `test/chaos/checker.ts`: the invariants above, from the recorded history alone; `test/chaos/checker.test.ts` feeds it hand-written histories, among them three the checker before issue 17 passed (a restart giving token 5 after 900 with every write refused; a dead leader named by both followers while the new one demoted; a lone election with no ticks, writes or probes).",
    "- Replay one episode: `node dist/test/chaos/cli.js --replay BACKEND:FAULT:SEED`.",
    "",
  );
  return lines.join("\n");
}

/**
 * An episode named as a failure's replay command names it,
 * `[group:]BACKEND:FAULT:SEED` (e.g. `group:postgres:reset:1545514212`);
 * null when the text is not one.
 */
export function parseReplay(text: string): EpisodeSpec | null {
  const parts = text.split(":");
  const group = parts[0] === "group";
  const [b, f, s, ...rest] = group ? parts.slice(1) : parts;
  if (
    rest.length > 0 ||
    !BACKENDS.includes(b as BackendName) ||
    !ALL_FAULTS.includes(f as FaultKind) ||
    !/^\d+$/.test(s ?? "") ||
    Number(s) >= 2 ** 31
  )
    return null;
  return {
    backend: b as BackendName,
    fault: f as FaultKind,
    seed: Number(s),
    ...(group ? { mode: "group" as const } : {}),
  };
}

/** Replays one episode exactly (a regression seed) and asserts it violated no invariant. */
export async function replayClean(
  env: ChaosEnv,
  t: TestContext,
  episode: EpisodeSpec | string,
): Promise<void> {
  const spec = typeof episode === "string" ? parseReplay(episode) : episode;
  assert.ok(spec, `not an episode: ${JSON.stringify(episode)}`);
  const [o] = await runPlan(env, [spec], DEFAULT_TIMING);
  assert.ok(o);
  t.diagnostic(`${o.detail}: terms ${o.metrics.terms}, heal→leader ${o.metrics.healToLeaderMs} ms`);
  assert.deepEqual(o.violations, [], `${o.detail} — replay: ${o.replay}`);
}
