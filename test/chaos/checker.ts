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
   * `token`), `state` (answer to a probe: `state`, `leader`), `log` (a line the
   * elector logged: `level`, `msg`, `key`), `started`, `stopped`.
   */
  readonly event: string;
  /** Monotonic ns. */
  readonly t: string;
  readonly token?: string;
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
export interface EpisodeHistory {
  readonly backend: string;
  readonly fault: string;
  readonly seed: number;
  readonly ttlMs: number;
  readonly retryMs: number;
  /** Interval of the leader's tick (work). */
  readonly tickMs: number;
  /** Allowed overlap (ms) of two processes both trusting their leadership (unfenced work). */
  readonly safetyBoundMs: number;
  /** Extra time allowed on top of ttl + retry for a working leader (tick interval, restarts, scheduling). */
  readonly recoverySlackMs: number;
  /** Bound on identical warn/error log lines per process per minute. */
  readonly logLinesPerMinute: number;
  readonly lines: readonly WorkerLine[];
  readonly writes: readonly FencedWrite[];
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
}

/** The measured figures of one episode. */
export interface EpisodeMetrics {
  /** Fenced writes accepted with a token lower than an earlier accepted write (must be 0). */
  fencedOutOfOrder: number;
  /** Tokens used by more than one process, as leader or in an accepted write (must be 0). */
  tokenReuse: number;
  /** Longest time two processes both trusted their leadership (ms; must be ≤ safetyBoundMs). */
  maxOverlapMs: number;
  /** Same, from `elected` to `demoted` events rather than the trust window (informational: includes frozen processes). */
  maxEventOverlapMs: number;
  /** Times the accepted fenced writes switched back to an older term (must be 0). */
  fencedInterleavings: number;
  /** From heal to the first work after it of the term leading at the probe (ms), or null if none. */
  healToLeaderMs: number | null;
  /** Largest count of identical warn/error lines of one process in one minute. */
  maxIdenticalLogLines: number;
  /** Leader work run after its term ended or outside its trust window (must be 0). */
  demotedWork: number;
  /** Probed processes neither leader nor a follower that knows the leader (must be 0). */
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

interface Seg {
  from: bigint;
  to: bigint;
}

/** Merges overlapping segments (sorted by start). */
function merge(segs: Seg[]): Seg[] {
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

/** Longest overlap between any two segments of two different owners. */
function maxPairOverlap(byOwner: Map<number, Seg[]>): bigint {
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
  const termUntil = new Map<string, bigint>(); // `${pid}/${token}` → latest trust-window end
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
  for (const l of lines) {
    const t = ns(l.t);
    const key = `${l.pid}/${l.token}`;
    if (l.event === "lead-start" && l.token) {
      closeAt(l.pid, t);
      const until = l.until ? ns(l.until) : t;
      open.set(l.pid, { token: l.token, start: t, until });
      push(trust, l.pid, { from: t, to: until });
      termUntil.set(key, until);
      const owners = tokenOwners.get(l.token) ?? new Set<number>();
      owners.add(l.pid);
      tokenOwners.set(l.token, owners);
    } else if (l.event === "renewed" && l.until) {
      const o = open.get(l.pid);
      if (o && (!l.token || l.token === o.token)) {
        const until = ns(l.until);
        push(trust, l.pid, { from: t, to: until });
        termUntil.set(`${l.pid}/${o.token}`, until);
      }
    } else if (l.event === "lead-end") {
      if (l.token) termEnd.set(key, t);
      closeAt(l.pid, t);
    }
  }
  for (const [pid] of [...open]) closeAt(pid, death.get(pid) ?? endOfAll);
  // A killed process trusts nothing after its death.
  for (const [pid, segs] of trust) {
    const d = death.get(pid);
    if (d !== undefined) for (const s of segs) if (s.to > d) s.to = d > s.from ? d : s.from;
  }
  const overlap = maxPairOverlap(trust);
  const eventOverlap = maxPairOverlap(events);

  // Leader work after the term ended, or outside the trust window in force.
  let demotedWork = 0;
  const trustAt = (pid: number, t: bigint) =>
    (trust.get(pid) ?? []).some((s) => s.from <= t && t <= s.to);
  for (const l of lines) {
    if (l.event !== "tick" || !l.token) continue;
    const t = ns(l.t);
    const end = termEnd.get(`${l.pid}/${l.token}`);
    if ((end !== undefined && t > end) || !trustAt(l.pid, t)) {
      demotedWork += 1;
      if (demotedWork <= 3) {
        violations.push(
          `leader work by a demoted process: pid ${l.pid} ticked with token ${l.token} at ${l.t} outside its term/trust window`,
        );
      }
    }
  }

  // Fenced resource: commit order must never go back to an older token.
  const writes = [...h.writes].sort((a, b) => a.seq - b.seq);
  let outOfOrder = 0;
  let interleavings = 0;
  let maxToken = 0n;
  const seenTokens = new Set<string>();
  let prev: string | null = null;
  for (const w of writes) {
    const tok = ns(w.token);
    if (tok < maxToken) {
      outOfOrder += 1;
      if (outOfOrder <= 3) {
        violations.push(
          `fenced write #${w.seq} accepted with token ${w.token} after token ${maxToken} (pid ${w.pid})`,
        );
      }
    }
    if (tok > maxToken) maxToken = tok;
    if (prev !== null && w.token !== prev && seenTokens.has(w.token)) interleavings += 1;
    seenTokens.add(w.token);
    prev = w.token;
    const owners = tokenOwners.get(w.token) ?? new Set<number>();
    owners.add(w.pid);
    tokenOwners.set(w.token, owners);
  }
  const ticks = lines.filter((l) => l.event === "tick").length;
  const healNs = ns(h.healAt);
  const writesAfterHeal = writes.filter((w) => ns(w.t) >= healNs).length;
  if (ticks > 0 && writesAfterHeal === 0) {
    violations.push(
      `the fenced resource accepted no write after the heal (${ticks} ticks, ${writes.length} writes in all)`,
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

  // Liveness: first work at or after heal of the term in force at the probe
  // (a leader whose term outlived the fault, or the one elected after it).
  // Work by a term that ended before the probe does not count: after a store
  // lost its data, the old leader works on until it learns, then nobody does.
  const heal = ns(h.healAt);
  const probe = ns(h.probeAt);
  let inForce: { pid: number; token: string } | null = null;
  {
    const last = new Map<number, WorkerLine>();
    for (const l of lines) {
      if (ns(l.t) > probe) break;
      if (l.event === "lead-start" || l.event === "lead-end") last.set(l.pid, l);
    }
    let latest: WorkerLine | null = null;
    for (const [pid, l] of last) {
      const dead = death.get(pid);
      if (l.event !== "lead-start" || !l.token || (dead !== undefined && dead <= probe)) continue;
      if (!latest || ns(l.t) > ns(latest.t)) latest = l;
    }
    if (latest) inForce = { pid: latest.pid, token: latest.token! };
  }
  const firstWork = lines.find(
    (l) =>
      (l.event === "tick" || l.event === "lead-start") &&
      ns(l.t) >= heal &&
      (!inForce || (l.pid === inForce.pid && l.token === inForce.token)),
  );
  const healToLeaderMs = firstWork ? toMs(ns(firstWork.t) - heal) : null;
  const recoveryBound = h.ttlMs + h.retryMs + h.recoverySlackMs;
  if (healToLeaderMs === null) {
    violations.push(`no leader worked after the fault healed (bound ${recoveryBound} ms)`);
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

  // Stuck: every probed process answers as leader, or as a follower naming the leader.
  const probeAt = ns(h.probeAt);
  const answers = new Map<number, WorkerLine>();
  for (const l of lines) if (l.event === "state" && ns(l.t) >= probeAt) answers.set(l.pid, l);
  const leaders = [...answers.values()].filter((a) => a.state === "leader").map((a) => a.holder);
  let stuck = 0;
  for (const pid of h.probed) {
    const a = answers.get(pid);
    const ok =
      a &&
      (a.state === "leader" ||
        (a.state === "follower" &&
          !!a.leader &&
          (leaders.length === 0 || leaders.includes(a.leader))));
    if (!ok) {
      stuck += 1;
      violations.push(
        a
          ? `pid ${pid} is stuck: state ${a.state}, believes leader is ${a.leader ?? "nobody"} (leaders: ${leaders.join(", ") || "none"})`
          : `pid ${pid} did not answer the state probe`,
      );
    }
  }
  if (leaders.length > 1) {
    violations.push(
      `${leaders.length} processes answered the probe as leader: ${leaders.join(", ")}`,
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
