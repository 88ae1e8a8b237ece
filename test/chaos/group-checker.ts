/**
 * Checks one group chaos episode (test/chaos/group-harness.ts) from its
 * recorded history alone: the single-lease invariants of checker.ts, per
 * partition, plus the group's own (every partition owned again soon after the
 * heal; the fleet balanced at the probe). Times are CLOCK_MONOTONIC ns as
 * decimal strings, shared by every process on the host.
 */
import {
  type Seg as CheckerSeg,
  cutAtDeath,
  type EpisodeMetrics,
  type EpisodeResult,
  type FaultHistory,
  fencedOrder,
  maxPairOverlap,
  tokenOrder,
} from "./checker.js";

/** One line a group worker printed (see group-worker.ts). */
export interface GroupLine {
  readonly pid: number;
  readonly holder: string;
  /** lead-start, renewed, lead-end, wrote, write-rejected, write-conflict, write-error, state, started, stopped, in-tx. */
  readonly event: string;
  readonly t: string;
  /** Partition. */
  readonly p?: number;
  readonly token?: string;
  /** End of the partition's trust window known at `t`. */
  readonly until?: string;
  /** When the tick that made this write started. */
  readonly s?: string;
  /**
   * When the library's leadership check for that tick began (`TickInfo.checkedAt`): the tick
   * ran only if its term was trusted then. Judged instead of `s`, which a process frozen
   * between the check and the tick's first line reads after it resumes.
   */
  readonly g?: string;
  /** Probe answer: partitions owned (clock-checked) and their tokens. */
  readonly owned?: readonly number[];
  readonly tokens?: readonly (string | null)[];
}

/** One write the fenced resource of partition `part` accepted, in commit order (`seq`) within it. */
export interface PartitionWrite {
  readonly part: number;
  readonly seq: number;
  readonly token: string;
  readonly pid: number;
  readonly t: string;
}

export interface GroupHistory extends FaultHistory {
  readonly partitions: number;
  /** Longest time from `settleAt` to the first balanced probe. */
  readonly balanceBoundMs: number;
  readonly lines: readonly GroupLine[];
  readonly writes: readonly PartitionWrite[];
  /** When the membership last changed by the fault's hand (heal, a paused member's resume, a death), or the end of a fault window without probes (clock-jump). */
  readonly settleAt: string;
  /**
   * The first probe that found the fleet balanced, of the balanced probes in
   * a row that ended the episode (`probeAt` when absent). The harness probes
   * on until every partition also wrote after the heal (judged by its own
   * bound), so the last probe can come well after the fleet was balanced:
   * group:postgres:reset:158343810 was balanced at its probe 2.05 s after
   * settling and reported "balanced 2517 ms" (bound 2500) from a later one.
   */
  readonly balancedAt?: string;
}

/**
 * etcd's own delay in ending a term whose holder stopped renewing. etcd deletes an expired
 * lease's keys only when its leader's lessor next looks for expired leases, every 500 ms
 * (etcd `server/lease/lessor.go`, `runLoop`), so such a term's key goes between its TTL and
 * TTL + 500 ms after its last keep-alive reached the leader (docs/stores/etcd.md). The recovery
 * bound ttl + retry + tick + slack takes the takeover to come at the ttl, as on the other stores;
 * on etcd it comes up to 500 ms later. Measured in the 655-episode run of seed 1131
 * (docs/chaos/2026-11-30-seed-1131.md), takeover after a SIGKILL (single lease, p50 / max):
 * etcd 1154 / 1344 ms, PostgreSQL 900 / 963, Redis 904 / 907, SQLite 904 / 947; after a long
 * SIGSTOP: etcd 1276 / 1434, the others 881–960. So on etcd, and only for the faults whose
 * recovery waits for the store to end a term by expiry (a holder killed, frozen or cut off),
 * both group bounds get this much more; not for a graceful stop, a reset or a short pause.
 */
export const ETCD_EXPIRY_CHECK_MS = 500;
const EXPIRY_FAULTS: ReadonlySet<string> = new Set([
  "kill-leader",
  "pause-long",
  "blackhole",
  "half-open",
  "latency",
]);

/** The extra recovery and balance time of a group episode on `backend` with `fault` (see {@link ETCD_EXPIRY_CHECK_MS}). */
export function etcdExpirySlackMs(backend: string, fault: string): number {
  return (backend === "etcd" || backend === "etcd-cluster") && EXPIRY_FAULTS.has(fault)
    ? ETCD_EXPIRY_CHECK_MS
    : 0;
}

export interface GroupMetrics extends EpisodeMetrics {
  /** Longest time a partition went without a tick in [heal, probe] (ms). */
  maxUnownedMs: number;
  /** From `settleAt` to the final (balanced) probe (ms), or null when it was not balanced. */
  balanceMs: number | null;
}

const ns = (s: string) => BigInt(s);
const toMs = (x: bigint) => Number(x) / 1e6;

type Seg = CheckerSeg & { token: string };

const push = <K, V>(m: Map<K, V[]>, k: K, v: V) => {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
};

/** Checks one group episode. Each kind of violation is listed at most 3 times (counted in the metrics). */
export function checkGroupEpisode(h: GroupHistory): EpisodeResult & { metrics: GroupMetrics } {
  const violations: string[] = [];
  const counts = new Map<string, number>();
  const violate = (kind: string, msg: string) => {
    const n = (counts.get(kind) ?? 0) + 1;
    counts.set(kind, n);
    if (n <= 3) violations.push(msg);
  };
  const lines = [...h.lines].sort((a, b) => (ns(a.t) < ns(b.t) ? -1 : ns(a.t) > ns(b.t) ? 1 : 0));
  const death = new Map<number, bigint>();
  for (const d of h.deaths) death.set(d.pid, ns(d.t));
  const probe = ns(h.probeAt);
  const heal = ns(h.healAt);
  const endOfAll = lines.reduce((m, l) => (ns(l.t) > m ? ns(l.t) : m), probe);

  // Per partition: trust windows and event intervals per pid, term ends, token owners.
  const trust = new Map<number, Map<number, Seg[]>>();
  const events = new Map<number, Map<number, Seg[]>>();
  const termEnd = new Map<string, bigint>(); // `${p}/${pid}/${token}`
  const electedAt = new Map<string, bigint>();
  const tokenOwners = new Map<string, Set<number>>(); // `${p}/${token}`
  const open = new Map<string, { token: string; start: bigint }>(); // `${p}/${pid}`
  const elected = new Map<number, ReturnType<typeof tokenOrder>>();
  const segsOf = (m: Map<number, Map<number, Seg[]>>, p: number, pid: number) => {
    let byPid = m.get(p);
    if (!byPid) {
      byPid = new Map();
      m.set(p, byPid);
    }
    let a = byPid.get(pid);
    if (!a) {
      a = [];
      byPid.set(pid, a);
    }
    return a;
  };
  const closeAt = (p: number, pid: number, at: bigint) => {
    const o = open.get(`${p}/${pid}`);
    if (!o) return;
    open.delete(`${p}/${pid}`);
    segsOf(events, p, pid).push({ from: o.start, to: at, token: o.token });
    for (const s of segsOf(trust, p, pid))
      if (s.token === o.token && s.to > at && s.from <= at) s.to = at;
  };
  let tokenRegressions = 0;
  for (const l of lines) {
    if (l.p === undefined || !l.token) continue;
    const t = ns(l.t);
    const p = l.p;
    if (l.event === "lead-start") {
      closeAt(p, l.pid, t);
      open.set(`${p}/${l.pid}`, { token: l.token, start: t });
      electedAt.set(`${p}/${l.pid}/${l.token}`, t);
      segsOf(trust, p, l.pid).push({ from: t, to: l.until ? ns(l.until) : t, token: l.token });
      const owners = tokenOwners.get(`${p}/${l.token}`) ?? new Set<number>();
      owners.add(l.pid);
      tokenOwners.set(`${p}/${l.token}`, owners);
      let order = elected.get(p);
      if (!order) {
        order = tokenOrder();
        elected.set(p, order);
      }
      const before = order(ns(l.token), l.pid);
      if (before) {
        tokenRegressions += 1;
        violate(
          "token",
          `partition ${p}: pid ${l.pid} was elected at ${l.t} with token ${l.token}, not larger than token ${before.token} elected before it (pid ${before.pid})`,
        );
      }
    } else if (l.event === "renewed" && l.until) {
      const o = open.get(`${p}/${l.pid}`);
      if (o && o.token === l.token)
        segsOf(trust, p, l.pid).push({ from: t, to: ns(l.until), token: l.token });
    } else if (l.event === "lead-end") {
      termEnd.set(`${p}/${l.pid}/${l.token}`, t);
      closeAt(p, l.pid, t);
    }
  }
  for (const k of [...open.keys()]) {
    const [p, pid] = k.split("/").map(Number) as [number, number];
    closeAt(p, pid, death.get(pid) ?? endOfAll);
  }
  // A killed process trusts nothing after its death.
  for (const byPid of trust.values()) cutAtDeath(byPid, death);

  const trusted = (p: number, pid: number, token: string, t: bigint) => {
    const end = termEnd.get(`${p}/${pid}/${token}`);
    if (end !== undefined && t > end) return false;
    return (trust.get(p)?.get(pid) ?? []).some(
      (s) => s.token === token && s.from <= t && t <= s.to,
    );
  };

  // Trust overlap per partition.
  let overlap = 0n;
  let eventOverlap = 0n;
  for (let p = 0; p < h.partitions; p++) {
    const o = maxPairOverlap(trust.get(p) ?? new Map());
    if (toMs(o) > h.safetyBoundMs)
      violate(
        "overlap",
        `partition ${p}: two processes trusted it at once for ${toMs(o).toFixed(3)} ms (bound ${h.safetyBoundMs} ms)`,
      );
    if (o > overlap) overlap = o;
    const e = maxPairOverlap(events.get(p) ?? new Map());
    if (e > eventOverlap) eventOverlap = e;
  }

  // Ticks (one write line each): inside their term's trust window; refusals while trusted.
  const dataLost = h.dataLostAt !== undefined ? ns(h.dataLostAt) : null;
  let demotedWork = 0;
  let refused = 0;
  let refusedWhileTrusted = 0;
  const ticks = new Map<number, bigint[]>();
  for (const l of lines) {
    const tick = l.event === "wrote" || l.event.startsWith("write-");
    if (!tick || l.p === undefined || !l.token || !l.s) continue;
    const s = ns(l.s);
    push(ticks, l.p, s);
    const checked = l.g !== undefined ? ns(l.g) : s;
    if (!trusted(l.p, l.pid, l.token, checked)) {
      demotedWork += 1;
      violate(
        "demoted",
        `partition ${l.p}: work by a demoted process: pid ${l.pid} ticked with token ${l.token} (checked at ${checked}, started at ${l.s}) outside its term/trust window`,
      );
    }
    if (l.event !== "write-rejected") continue;
    refused += 1;
    const t = ns(l.t);
    if (!trusted(l.p, l.pid, l.token, t)) continue;
    const began = electedAt.get(`${l.p}/${l.pid}/${l.token}`);
    if (dataLost !== null && began !== undefined && began <= dataLost && dataLost <= t) continue;
    refusedWhileTrusted += 1;
    violate(
      "refused",
      `partition ${l.p}: the store refused a fenced write of pid ${l.pid} (token ${l.token}) at ${l.t}, while it trusted its term`,
    );
  }

  // Fenced resource per partition: commit order never goes back to an older token.
  const byPart = new Map<number, PartitionWrite[]>();
  for (const w of h.writes) push(byPart, w.part, w);
  let outOfOrder = 0;
  let interleavings = 0;
  let writesAfterHeal = 0;
  for (let p = 0; p < h.partitions; p++) {
    const ws = (byPart.get(p) ?? []).sort((a, b) => a.seq - b.seq);
    const order = fencedOrder(ws, (w, maxToken) =>
      violate(
        "order",
        `partition ${p}: fenced write #${w.seq} accepted with token ${w.token} after token ${maxToken} (pid ${w.pid})`,
      ),
    );
    outOfOrder += order.outOfOrder;
    interleavings += order.interleavings;
    let after = 0;
    for (const w of ws) {
      const owners = tokenOwners.get(`${p}/${w.token}`) ?? new Set<number>();
      owners.add(w.pid);
      tokenOwners.set(`${p}/${w.token}`, owners);
      if (ns(w.t) >= heal) after += 1;
    }
    writesAfterHeal += after;
    if (after === 0)
      violate(
        "resume",
        `partition ${p}: the fenced resource accepted no write after the heal (${ws.length} in all)`,
      );
  }
  if (interleavings > 0)
    violate(
      "interleave",
      `fenced work of two terms of one partition interleaved ${interleavings} time(s)`,
    );
  let tokenReuse = 0;
  for (const [k, owners] of tokenOwners) {
    if (owners.size < 2) continue;
    tokenReuse += 1;
    const [p, tok] = k.split("/");
    violate(
      "reuse",
      `partition ${p}: token ${tok} was used by ${owners.size} processes: ${[...owners].join(", ")}`,
    );
  }

  // Recovery: from the heal to the probe, no partition goes without a tick for longer than the bound.
  const recoveryBound = h.ttlMs + h.retryMs + h.tickMs + h.recoverySlackMs;
  let maxUnowned = 0n;
  for (let p = 0; p < h.partitions; p++) {
    const ts = (ticks.get(p) ?? [])
      .filter((t) => t >= heal && t <= probe)
      .sort((a, b) => (a < b ? -1 : 1));
    let last = heal;
    let gap = 0n;
    let gapEnd = probe;
    for (const t of [...ts, probe]) {
      if (t - last > gap) {
        gap = t - last;
        gapEnd = t;
      }
      last = t;
    }
    if (gap > maxUnowned) maxUnowned = gap;
    if (toMs(gap) > recoveryBound)
      violate(
        "unowned",
        `partition ${p}: no process worked it for ${toMs(gap).toFixed(0)} ms (until ${gapEnd === probe ? "the probe" : gapEnd}) after the heal (bound ttl + retry + tick + slack = ${recoveryBound} ms)`,
      );
  }

  // The probe: every partition owned by exactly one probed process, each owning ⌊P/M⌋ or ⌈P/M⌉.
  const answers = new Map<number, GroupLine>();
  for (const l of lines) if (l.event === "state" && ns(l.t) >= probe) answers.set(l.pid, l);
  if (h.probed.length === 0) violate("probe", "no process was probed");
  let stuck = 0;
  const ownerOf = new Map<number, number[]>();
  for (const pid of h.probed) {
    const a = answers.get(pid);
    if (!a?.owned) {
      stuck += 1;
      violate("probe", `pid ${pid} did not answer the state probe`);
      continue;
    }
    for (const p of a.owned) push(ownerOf, p, pid);
  }
  const m = h.probed.length;
  const lo = m > 0 ? Math.floor(h.partitions / m) : 0;
  const hi = m > 0 ? Math.ceil(h.partitions / m) : 0;
  let balanced = stuck === 0 && m > 0;
  for (let p = 0; p < h.partitions; p++) {
    const o = ownerOf.get(p) ?? [];
    if (o.length !== 1) {
      balanced = false;
      violate(
        "balance",
        `partition ${p} is owned by ${o.length === 0 ? "no probed process" : `${o.length} processes (${o.join(", ")})`} at the probe`,
      );
    }
  }
  for (const pid of h.probed) {
    const n = answers.get(pid)?.owned?.length;
    if (n === undefined) continue;
    if (n < lo || n > hi) {
      balanced = false;
      violate(
        "balance",
        `pid ${pid} owns ${n} partitions at the probe; with ${m} live members each should own ${lo}${hi !== lo ? ` or ${hi}` : ""}`,
      );
    }
  }
  const settle = ns(h.settleAt);
  const balancedAt = h.balancedAt !== undefined ? ns(h.balancedAt) : probe;
  const balanceMs = balanced ? Math.max(0, toMs(balancedAt - settle)) : null;
  if (balanceMs !== null && balanceMs > h.balanceBoundMs)
    violate(
      "balance-time",
      `the fleet was balanced ${balanceMs.toFixed(0)} ms after it settled (bound 2 × ttl + slack = ${h.balanceBoundMs} ms)`,
    );

  for (const [kind, n] of counts)
    if (n > 3) violations.push(`… and ${n - 3} more ${kind} violation(s)`);

  return {
    backend: h.backend,
    fault: h.fault,
    seed: h.seed,
    violations,
    metrics: {
      fencedOutOfOrder: outOfOrder,
      tokenReuse,
      tokenRegressions,
      refusedWhileTrusted,
      refused,
      maxOverlapMs: toMs(overlap),
      maxEventOverlapMs: toMs(eventOverlap),
      fencedInterleavings: interleavings,
      healToLeaderMs: toMs(maxUnowned),
      maxIdenticalLogLines: 0,
      demotedWork,
      stuck,
      writes: h.writes.length,
      writesAfterHeal,
      terms: electedAt.size,
      maxUnownedMs: toMs(maxUnowned),
      balanceMs,
    },
  };
}
