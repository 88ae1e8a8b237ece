/**
 * Reads the history of one chaos episode and checks Tenure's invariants
 * (DESIGN.md §6). All times are CLOCK_MONOTONIC nanoseconds as decimal strings
 * (`process.hrtime.bigint()`), which every process on this host shares, so
 * overlaps between processes are measured exactly.
 */

/** One line a worker printed. */
export interface WorkerLine {
  readonly pid: number;
  readonly holder: string;
  /**
   * `lead-start` (elected; `until` = end of the trust window), `renewed`
   * (`until` moved), `lead-end` (demoted), `tick` (leader work ran with
   * `token`), `wrote` / `write-rejected` (the store accepted / refused a fenced
   * write of term `token`; `t` is when the answer came back), `state` (answer
   * to a probe: `state`, `leader`, `token`), `log` (a line the elector logged:
   * `level`, `msg`, `key`), `started`, `stopped`.
   */
  readonly event: string;
  /** Monotonic ns. */
  readonly t: string;
  readonly token?: string;
  /** `tick`: when the library's leadership check for it began (`TickInfo.checkedAt`), on the same clock as `t`. */
  readonly g?: string;
  /** Monotonic ns: the end of the trust window known at `t`. */
  readonly until?: string;
  readonly state?: string;
  /** Holder the process believes leads (state lines). */
  readonly leader?: string | null;
  readonly level?: string;
  /** Identity of a log line: level, message and error text (no times). */
  readonly key?: string;
}

/** One write the fenced resource accepted, in commit order (`seq`). */
export interface FencedWrite {
  readonly seq: number;
  readonly token: string;
  readonly pid: number;
  readonly t: string;
}

/** Everything the harness recorded about one episode. */
/** What every episode's history records, single-lease or group. */
export interface FaultHistory {
  readonly backend: string;
  readonly fault: string;
  readonly seed: number;
  readonly ttlMs: number;
  readonly retryMs: number;
  /** Interval of the leader's tick (work). */
  readonly tickMs: number;
  /** Allowed overlap (ms) of two processes both trusting the same lease (unfenced work). */
  readonly safetyBoundMs: number;
  /** Extra time allowed on top of ttl + retry for work to run again (tick interval, restarts, scheduling). */
  readonly recoverySlackMs: number;
  /** Monotonic ns when the fault started and when it healed. */
  readonly faultAt: string;
  readonly healAt: string;
  /** Monotonic ns when the final state probe was sent (processes alive then must not be stuck). */
  readonly probeAt: string;
  /** Processes killed (SIGKILL) or exited, and when. */
  readonly deaths: readonly { readonly pid: number; readonly t: string }[];
  /** Processes stopped (SIGSTOP) and resumed. */
  readonly pauses: readonly { readonly pid: number; readonly from: string; readonly to: string }[];
  /** Pids that must answer the final probe (alive, not paused, not stopping). */
  readonly probed: readonly number[];
  /**
   * Monotonic ns when the store lost its data (a restart of a store that does
   * not persist, like a Redis without AOF/RDB), if the fault did that. A term
   * elected before it may see its fenced writes refused while it still trusts
   * its lease (DESIGN.md §2: tokens and leases survive restarts only where the
   * store is durable); any other refusal of a trusted term is a violation.
   */
  readonly dataLostAt?: string;
}

export interface EpisodeHistory extends FaultHistory {
  /** Bound on identical warn/error log lines per process per minute. */
  readonly logLinesPerMinute: number;
  readonly lines: readonly WorkerLine[];
  readonly writes: readonly FencedWrite[];
}

/** The measured figures of one episode. */
export interface EpisodeMetrics {
  /** Fenced writes accepted with a token lower than an earlier accepted write (must be 0). */
  fencedOutOfOrder: number;
  /** Tokens used by more than one process, as leader or in an accepted write (must be 0). */
  tokenReuse: number;
  /** Terms elected with a token not larger than that of a term elected before them (must be 0). */
  tokenRegressions: number;
  /** Fenced writes the store refused while their writer still trusted its term (must be 0). */
  refusedWhileTrusted: number;
  /** Refused fenced writes in all (informational: a stale leader's refusals are fencing at work). */
  refused: number;
  /** Longest time two processes both trusted their leadership (ms; must be ≤ safetyBoundMs). */
  maxOverlapMs: number;
  /** Same, from `elected` to `demoted` events rather than the trust window (informational: includes frozen processes). */
  maxEventOverlapMs: number;
  /** Times the accepted fenced writes switched back to an older term (must be 0). */
  fencedInterleavings: number;
  /** From heal to the first tick after it of the term leading at the probe (ms), or null if none. */
  healToLeaderMs: number | null;
  /** Largest count of identical warn/error lines of one process in one minute. */
  maxIdenticalLogLines: number;
  /** Leader work run after its term ended or outside its trust window (must be 0). */
  demotedWork: number;
  /** Probed processes neither the one leader nor a follower naming it (must be 0). */
  stuck: number;
  /** Accepted fenced writes, and those after the heal (must be > 0: fenced work resumes). */
  writes: number;
  writesAfterHeal: number;
  terms: number;
}

export interface EpisodeResult {
  readonly backend: string;
  readonly fault: string;
  readonly seed: number;
  readonly metrics: EpisodeMetrics;
  /** Human-readable invariant violations; empty when the episode passed. */
  readonly violations: string[];
}

const NS_PER_MS = 1_000_000n;
const toMs = (ns: bigint) => Number(ns) / 1e6;
const ns = (s: string) => BigInt(s);

export interface Seg {
  from: bigint;
  to: bigint;
  /** The term (token) whose trust window this is. */
  token?: string;
}

/** Merges overlapping segments (sorted by start). */
function merge(segs: readonly Seg[]): Seg[] {
  const s = [...segs].filter((x) => x.to > x.from).sort((a, b) => (a.from < b.from ? -1 : 1));
  const out: Seg[] = [];
  for (const x of s) {
    const last = out.at(-1);
    if (last && x.from <= last.to) {
      if (x.to > last.to) last.to = x.to;
    } else out.push({ ...x });
  }
  return out;
}

/** Longest overlap between any two segments of two different owners (per lease or per partition). */
export function maxPairOverlap(byOwner: ReadonlyMap<number, readonly Seg[]>): bigint {
  const owners = [...byOwner.entries()].map(([k, v]) => [k, merge(v)] as const);
  let best = 0n;
  for (let i = 0; i < owners.length; i++) {
    for (let j = i + 1; j < owners.length; j++) {
      for (const a of owners[i]![1]) {
        for (const b of owners[j]![1]) {
          const o = (a.to < b.to ? a.to : b.to) - (a.from > b.from ? a.from : b.from);
          if (o > best) best = o;
        }
      }
    }
  }
  return best;
}

/** A killed process trusts nothing after its death: cuts its trust windows there. */
export function cutAtDeath(trust: ReadonlyMap<number, Seg[]>, death: ReadonlyMap<number, bigint>) {
  for (const [pid, segs] of trust) {
    const d = death.get(pid);
    if (d !== undefined) for (const s of segs) if (s.to > d) s.to = d > s.from ? d : s.from;
  }
}

/**
 * Token order of one lease (or partition): terms in election order must each
 * carry a larger token than every term elected before them, by any process
 * (DESIGN.md §2). The returned function takes each election in turn and
 * returns the earlier term it does not exceed, or null.
 */
export function tokenOrder(): (
  token: bigint,
  pid: number,
) => { token: bigint; pid: number } | null {
  let max: { token: bigint; pid: number } | null = null;
  return (token, pid) => {
    const before = max && token <= max.token ? max : null;
    if (!max || token > max.token) max = { token, pid };
    return before;
  };
}

/**
 * Fenced order of one lease's (or partition's) accepted writes, in commit
 * order: a write with a token lower than an earlier one is reported (with
 * the running count and the larger token); a switch back to an older term is
 * counted as an interleaving.
 */
export function fencedOrder(
  writes: readonly { readonly seq: number; readonly token: string; readonly pid: number }[],
  report: (w: { seq: number; token: string; pid: number }, maxToken: bigint, n: number) => void,
): { outOfOrder: number; interleavings: number } {
  let outOfOrder = 0;
  let interleavings = 0;
  let maxToken = 0n;
  const seen = new Set<string>();
  let prev: string | null = null;
  for (const w of writes) {
    const tok = ns(w.token);
    if (tok < maxToken) {
      outOfOrder += 1;
      report(w, maxToken, outOfOrder);
    }
    if (tok > maxToken) maxToken = tok;
    if (prev !== null && w.token !== prev && seen.has(w.token)) interleavings += 1;
    seen.add(w.token);
    prev = w.token;
  }
  return { outOfOrder, interleavings };
}

/** Checks one episode. */
export function checkEpisode(h: EpisodeHistory): EpisodeResult {
  const violations: string[] = [];
  const lines = [...h.lines].sort((a, b) => (ns(a.t) < ns(b.t) ? -1 : ns(a.t) > ns(b.t) ? 1 : 0));
  const death = new Map<number, bigint>();
  for (const d of h.deaths) death.set(d.pid, ns(d.t));
  const endOfAll = lines.reduce((m, l) => (ns(l.t) > m ? ns(l.t) : m), ns(h.probeAt));

  // Trust-window segments and event intervals, per process and per term.
  const trust = new Map<number, Seg[]>();
  const events = new Map<number, Seg[]>();
  const termEnd = new Map<string, bigint>(); // `${pid}/${token}` → lead-end time
  const tokenOwners = new Map<string, Set<number>>();
  const open = new Map<number, { token: string; start: bigint; until: bigint }>();
  const closeAt = (pid: number, at: bigint) => {
    const o = open.get(pid);
    if (!o) return;
    open.delete(pid);
    const end = at;
    push(events, pid, { from: o.start, to: end });
    // The trust window of the last renewal, cut at the end of the term.
    const segs = trust.get(pid) ?? [];
    for (const s of segs) if (s.to > end && s.from <= end && s.from >= o.start) s.to = end;
  };
  const push = (m: Map<number, Seg[]>, pid: number, s: Seg) => {
    const a = m.get(pid) ?? [];
    a.push(s);
    m.set(pid, a);
  };
  // Terms in election order: each must carry a larger token than every term
  // elected before it, by any process (DESIGN.md §2). Judged by Tenure's
  // tokens, not by what a fenced resource happened to accept.
  let tokenRegressions = 0;
  const elected = tokenOrder();
  for (const l of lines) {
    const t = ns(l.t);
    const key = `${l.pid}/${l.token}`;
    if (l.event === "lead-start" && l.token) {
      closeAt(l.pid, t);
      const until = l.until ? ns(l.until) : t;
      open.set(l.pid, { token: l.token, start: t, until });
      push(trust, l.pid, { from: t, to: until, token: l.token });
      const owners = tokenOwners.get(l.token) ?? new Set<number>();
      owners.add(l.pid);
      tokenOwners.set(l.token, owners);
      const before = elected(ns(l.token), l.pid);
      if (before) {
        tokenRegressions += 1;
        if (tokenRegressions <= 3) {
          violations.push(
            `pid ${l.pid} was elected at ${l.t} with token ${l.token}, not larger than token ${before.token} elected before it (pid ${before.pid})`,
          );
        }
      }
    } else if (l.event === "renewed" && l.until) {
      const o = open.get(l.pid);
      if (o && (!l.token || l.token === o.token)) {
        push(trust, l.pid, { from: t, to: ns(l.until), token: o.token });
      }
    } else if (l.event === "lead-end") {
      if (l.token) termEnd.set(key, t);
      closeAt(l.pid, t);
    }
  }
  for (const [pid] of [...open]) closeAt(pid, death.get(pid) ?? endOfAll);
  cutAtDeath(trust, death);
  const overlap = maxPairOverlap(trust);
  const eventOverlap = maxPairOverlap(events);

  /** Whether `pid` trusted its term `token` at `t`: inside one of that term's trust windows, before the term ended. */
  const trusted = (pid: number, token: string, t: bigint) => {
    const end = termEnd.get(`${pid}/${token}`);
    if (end !== undefined && t > end) return false;
    return (trust.get(pid) ?? []).some((s) => s.token === token && s.from <= t && t <= s.to);
  };

  // Leader work after the term ended, or outside the trust window in force.
  let demotedWork = 0;
  for (const l of lines) {
    if (l.event !== "tick" || !l.token) continue;
    // Judged when the library checked its leadership for this tick; a worker
    // that printed no check time is judged when it printed the tick.
    const checked = l.g !== undefined ? ns(l.g) : ns(l.t);
    if (!trusted(l.pid, l.token, checked)) {
      demotedWork += 1;
      if (demotedWork <= 3) {
        violations.push(
          `leader work by a demoted process: pid ${l.pid} ticked with token ${l.token} (checked at ${checked}, printed at ${l.t}) outside its term/trust window`,
        );
      }
    }
  }

  // A fenced write the store refused while its writer still trusted its term:
  // the store gave the lease away (or forgot it) inside the holder's trust
  // window. The answer came back at `t`; trusting the term then means the
  // lease was live in the store when the write reached it.
  const dataLost = h.dataLostAt !== undefined ? ns(h.dataLostAt) : null;
  const electedAt = new Map<string, bigint>();
  for (const l of lines) {
    const k = `${l.pid}/${l.token}`;
    if (l.event === "lead-start" && l.token && !electedAt.has(k)) electedAt.set(k, ns(l.t));
  }
  let refused = 0;
  let refusedWhileTrusted = 0;
  for (const l of lines) {
    if (l.event !== "write-rejected" || !l.token) continue;
    refused += 1;
    const t = ns(l.t);
    if (!trusted(l.pid, l.token, t)) continue;
    const began = electedAt.get(`${l.pid}/${l.token}`);
    if (dataLost !== null && began !== undefined && began <= dataLost && dataLost <= t) continue;
    refusedWhileTrusted += 1;
    if (refusedWhileTrusted <= 3) {
      violations.push(
        `the store refused a fenced write of pid ${l.pid} (token ${l.token}) at ${l.t}, while it trusted its term`,
      );
    }
  }

  // Fenced resource: commit order must never go back to an older token.
  const writes = [...h.writes].sort((a, b) => a.seq - b.seq);
  const { outOfOrder, interleavings } = fencedOrder(writes, (w, maxToken, n) => {
    if (n <= 3) {
      violations.push(
        `fenced write #${w.seq} accepted with token ${w.token} after token ${maxToken} (pid ${w.pid})`,
      );
    }
  });
  for (const w of writes) {
    const owners = tokenOwners.get(w.token) ?? new Set<number>();
    owners.add(w.pid);
    tokenOwners.set(w.token, owners);
  }
  const heal = ns(h.healAt);
  const writesAfterHeal = writes.filter((w) => ns(w.t) >= heal).length;
  if (writesAfterHeal === 0) {
    violations.push(
      `the fenced resource accepted no write after the heal (${writes.length} writes in all)`,
    );
  }
  if (interleavings > 0) {
    violations.push(`fenced work of two terms interleaved ${interleavings} time(s)`);
  }
  let tokenReuse = 0;
  for (const [tok, owners] of tokenOwners) {
    if (owners.size > 1) {
      tokenReuse += 1;
      violations.push(
        `token ${tok} was used by ${owners.size} processes: ${[...owners].join(", ")}`,
      );
    }
  }

  const overlapMs = toMs(overlap);
  if (overlapMs > h.safetyBoundMs) {
    violations.push(
      `two processes trusted their leadership at once for ${overlapMs.toFixed(3)} ms (bound ${h.safetyBoundMs} ms)`,
    );
  }

  // The probe: exactly one process answers as leader, alive, in a term that
  // ticked after the heal; every other probed process is a follower naming it.
  const probe = ns(h.probeAt);
  const answers = new Map<number, WorkerLine>();
  for (const l of lines) if (l.event === "state" && ns(l.t) >= probe) answers.set(l.pid, l);
  if (h.probed.length === 0) violations.push("no process was probed");
  const leaders = h.probed
    .map((pid) => answers.get(pid))
    .filter((a): a is WorkerLine => a?.state === "leader");
  const leader = leaders.length === 1 ? leaders[0]! : null;
  if (leaders.length === 0) {
    violations.push("no probed process answered as leader");
  } else if (leaders.length > 1) {
    violations.push(
      `${leaders.length} processes answered the probe as leader: ${leaders.map((a) => a.holder).join(", ")}`,
    );
  }
  // The leader's term at its answer: its last election before the answer, not
  // ended. Judged at the answer, not at the probe's send time: a process the
  // signal reaches late (a busy machine) may be elected in between, and its
  // answer then names the new term.
  let inForce: { pid: number; token: string; at: bigint } | null = null;
  if (leader) {
    const answeredAt = ns(leader.t);
    let last: WorkerLine | null = null;
    for (const l of lines) {
      if (ns(l.t) > answeredAt) break;
      if (l.pid === leader.pid && (l.event === "lead-start" || l.event === "lead-end")) last = l;
    }
    const dead = death.get(leader.pid);
    if (
      last?.event !== "lead-start" ||
      !last.token ||
      (leader.token !== undefined && leader.token !== last.token) ||
      (dead !== undefined && dead <= answeredAt)
    ) {
      violations.push(
        `pid ${leader.pid} answered the probe as leader without a live term (last: ${last ? `${last.event} ${last.token ?? ""}` : "none"})`,
      );
    } else inForce = { pid: leader.pid, token: last.token, at: answeredAt };
  }
  let stuck = 0;
  for (const pid of h.probed) {
    const a = answers.get(pid);
    if (a?.state === "leader") continue;
    const ok = a?.state === "follower" && !!leader && a.leader === leader.holder;
    if (!ok) {
      stuck += 1;
      violations.push(
        a
          ? `pid ${pid} is stuck: state ${a.state}, believes leader is ${a.leader ?? "nobody"} (leaders: ${leaders.map((x) => x.holder).join(", ") || "none"})`
          : `pid ${pid} did not answer the state probe`,
      );
    }
  }

  // Liveness: the first tick at or after the heal of the term leading at the
  // probe. An election is not work, nor is work of a term that ended before the
  // probe (after a store lost its data, the old leader works on until it learns).
  const firstWork = inForce
    ? lines.find(
        (l) =>
          l.event === "tick" &&
          ns(l.t) >= heal &&
          ns(l.t) <= inForce.at &&
          l.pid === inForce.pid &&
          l.token === inForce.token,
      )
    : undefined;
  const healToLeaderMs = firstWork ? toMs(ns(firstWork.t) - heal) : null;
  const recoveryBound = h.ttlMs + h.retryMs + h.recoverySlackMs;
  if (healToLeaderMs === null) {
    violations.push(
      `no leader worked after the fault healed in the term leading at the probe (bound ${recoveryBound} ms)`,
    );
  } else if (healToLeaderMs > recoveryBound) {
    violations.push(
      `a working leader took ${healToLeaderMs.toFixed(0)} ms after heal (bound ttl + retry + slack = ${recoveryBound} ms)`,
    );
  }

  // Identical warn/error lines per process per minute.
  let maxIdentical = 0;
  let worst = "";
  const counts = new Map<string, bigint[]>();
  for (const l of lines) {
    if (l.event !== "log" || (l.level !== "warn" && l.level !== "error")) continue;
    const k = `${l.pid}\u0000${l.key ?? ""}`;
    const a = counts.get(k) ?? [];
    a.push(ns(l.t));
    counts.set(k, a);
  }
  const minute = 60_000n * NS_PER_MS;
  for (const [k, ts] of counts) {
    let lo = 0;
    for (let hi = 0; hi < ts.length; hi++) {
      while (ts[hi]! - ts[lo]! >= minute) lo += 1;
      const n = hi - lo + 1;
      if (n > maxIdentical) {
        maxIdentical = n;
        worst = k.replace("\u0000", ": ");
      }
    }
  }
  if (maxIdentical > h.logLinesPerMinute) {
    violations.push(
      `${maxIdentical} identical log lines in one minute (bound ${h.logLinesPerMinute}): pid ${worst}`,
    );
  }

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
      maxOverlapMs: overlapMs,
      maxEventOverlapMs: toMs(eventOverlap),
      fencedInterleavings: interleavings,
      healToLeaderMs,
      maxIdenticalLogLines: maxIdentical,
      demotedWork,
      stuck,
      writes: writes.length,
      writesAfterHeal,
      terms: new Set(lines.filter((l) => l.event === "lead-start").map((l) => l.token)).size,
    },
  };
}

/** Nearest-rank percentile of a list (null when empty). */
export function percentile(xs: readonly number[], p: number): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i]!;
}

/** Per backend and fault kind: the figures the report shows. */
export interface Summary {
  backend: string;
  fault: string;
  episodes: number;
  failed: number;
  fencedOutOfOrder: number;
  tokenReuse: number;
  tokenRegressions: number;
  refusedWhileTrusted: number;
  refused: number;
  maxOverlapMs: number;
  maxEventOverlapMs: number;
  demotedWork: number;
  stuck: number;
  maxIdenticalLogLines: number;
  healToLeaderMs: {
    p50: number | null;
    p90: number | null;
    p99: number | null;
    max: number | null;
  };
  failedSeeds: number[];
}

/** Groups results per backend and fault kind. */
export function summarize(results: readonly EpisodeResult[]): Summary[] {
  const groups = new Map<string, EpisodeResult[]>();
  for (const r of results) {
    const k = `${r.backend}\u0000${r.fault}`;
    const a = groups.get(k) ?? [];
    a.push(r);
    groups.set(k, a);
  }
  const out: Summary[] = [];
  for (const [k, rs] of [...groups].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const [backend, fault] = k.split("\u0000") as [string, string];
    const heal = rs.map((r) => r.metrics.healToLeaderMs).filter((x): x is number => x !== null);
    const sum = (f: (m: EpisodeMetrics) => number) => rs.reduce((s, r) => s + f(r.metrics), 0);
    const max = (f: (m: EpisodeMetrics) => number) =>
      rs.reduce((s, r) => Math.max(s, f(r.metrics)), 0);
    out.push({
      backend,
      fault,
      episodes: rs.length,
      failed: rs.filter((r) => r.violations.length > 0).length,
      fencedOutOfOrder: sum((m) => m.fencedOutOfOrder),
      tokenReuse: sum((m) => m.tokenReuse),
      tokenRegressions: sum((m) => m.tokenRegressions),
      refusedWhileTrusted: sum((m) => m.refusedWhileTrusted),
      refused: sum((m) => m.refused),
      maxOverlapMs: max((m) => m.maxOverlapMs),
      maxEventOverlapMs: max((m) => m.maxEventOverlapMs),
      demotedWork: sum((m) => m.demotedWork),
      stuck: sum((m) => m.stuck),
      maxIdenticalLogLines: max((m) => m.maxIdenticalLogLines),
      healToLeaderMs: {
        p50: percentile(heal, 50),
        p90: percentile(heal, 90),
        p99: percentile(heal, 99),
        max: heal.length ? Math.max(...heal) : null,
      },
      failedSeeds: rs.filter((r) => r.violations.length > 0).map((r) => r.seed),
    });
  }
  return out;
}
