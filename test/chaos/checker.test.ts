import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkEpisode,
  type EpisodeHistory,
  percentile,
  summarize,
  type WorkerLine,
} from "./checker.js";

/** ms → monotonic ns string, from an arbitrary origin. */
const T = (ms: number) => (BigInt(Math.round(ms * 1000)) * 1000n + 10n ** 12n).toString();

function line(pid: number, event: string, ms: number, extra: Partial<WorkerLine> = {}): WorkerLine {
  return { pid, holder: `h${pid}`, event, t: T(ms), ...extra };
}

/** A clean failover: pid 1 leads token 1, is killed at 1000; pid 2 leads token 2 from 2100. */
function clean(): EpisodeHistory {
  const lines: WorkerLine[] = [
    line(1, "lead-start", 0, { token: "1", until: T(900) }),
    line(1, "tick", 10, { token: "1" }),
    line(1, "renewed", 300, { token: "1", until: T(1200) }),
    line(1, "tick", 500, { token: "1" }),
    line(2, "state", 1500, { state: "follower", leader: "h1" }),
    line(2, "lead-start", 2100, { token: "2", until: T(3000) }),
    line(2, "tick", 2110, { token: "2" }),
    line(2, "renewed", 2400, { token: "2", until: T(3300) }),
    line(2, "state", 2600, { state: "leader", leader: "h2" }),
    line(3, "state", 2601, { state: "follower", leader: "h2" }),
    line(3, "log", 1000, { level: "warn", key: "warn store unreachable" }),
    line(3, "log", 1200, { level: "warn", key: "warn store unreachable" }),
  ];
  return {
    backend: "test",
    fault: "kill-leader",
    seed: 42,
    ttlMs: 1000,
    retryMs: 200,
    tickMs: 100,
    safetyBoundMs: 0,
    recoverySlackMs: 200,
    logLinesPerMinute: 5,
    lines,
    writes: [
      { seq: 1, token: "1", pid: 1, t: T(11) },
      { seq: 2, token: "1", pid: 1, t: T(501) },
      { seq: 3, token: "2", pid: 2, t: T(2111) },
    ],
    faultAt: T(1000),
    healAt: T(1000),
    probeAt: T(2550),
    deaths: [{ pid: 1, t: T(1000) }],
    pauses: [],
    probed: [2, 3],
  };
}

describe("chaos checker", () => {
  it("passes a clean failover and measures it", () => {
    const r = checkEpisode(clean());
    assert.deepEqual(r.violations, []);
    assert.equal(r.metrics.fencedOutOfOrder, 0);
    assert.equal(r.metrics.maxOverlapMs, 0);
    assert.equal(r.metrics.demotedWork, 0);
    assert.equal(r.metrics.stuck, 0);
    assert.equal(r.metrics.healToLeaderMs, 1110);
    assert.equal(r.metrics.maxIdenticalLogLines, 2);
    assert.equal(r.metrics.writes, 3);
    assert.equal(r.metrics.terms, 2);
  });

  it("flags a fenced write accepted out of token order, and the interleaving", () => {
    const h = clean();
    const r = checkEpisode({
      ...h,
      writes: [...h.writes, { seq: 4, token: "1", pid: 1, t: T(2200) }],
    });
    assert.equal(r.metrics.fencedOutOfOrder, 1);
    assert.equal(r.metrics.fencedInterleavings, 1);
    assert.match(r.violations.join("\n"), /fenced write #4 accepted with token 1 after token 2/);
  });

  it("flags two processes trusting their leadership at once beyond the bound", () => {
    const h = clean();
    // pid 1 was frozen, not killed: its trust window (until 1200) overlaps pid 2 only if pid 2
    // was elected before 1200 — make pid 2 win at 1100.
    const lines = h.lines.map((l) =>
      l.pid === 2 && l.event === "lead-start" ? { ...l, t: T(1100) } : l,
    );
    const r = checkEpisode({ ...h, lines, deaths: [] });
    assert.equal(r.metrics.maxOverlapMs, 100);
    assert.match(r.violations.join("\n"), /trusted their leadership at once for 100\.000 ms/);
    // The same history passes with a 100 ms bound.
    const ok = checkEpisode({ ...h, lines, deaths: [], safetyBoundMs: 100 });
    assert.ok(!ok.violations.some((v) => v.includes("trusted")));
  });

  it("a frozen leader's event overlap is reported, but its expired trust window is not an overlap", () => {
    const h = clean();
    const lines = [...h.lines, line(1, "lead-end", 2500, { token: "1" })];
    const r = checkEpisode({ ...h, lines, deaths: [] });
    assert.equal(r.metrics.maxOverlapMs, 0);
    assert.equal(r.metrics.maxEventOverlapMs, 400);
    assert.deepEqual(r.violations, []);
  });

  it("flags leader work by a demoted process and outside the trust window", () => {
    const h = clean();
    const afterEnd = [
      ...h.lines,
      line(1, "lead-end", 600, { token: "1" }),
      line(1, "tick", 700, { token: "1" }),
    ];
    const r1 = checkEpisode({ ...h, lines: afterEnd });
    assert.equal(r1.metrics.demotedWork, 1);
    assert.match(r1.violations.join("\n"), /leader work by a demoted process: pid 1/);
    // No lead-end yet, but past the trust window (renewed until 1200).
    const pastWindow = [...h.lines, line(1, "tick", 1250, { token: "1" })];
    const r2 = checkEpisode({ ...h, lines: pastWindow, deaths: [] });
    assert.equal(r2.metrics.demotedWork, 1);
    // Checked inside the window, printed after it (frozen in between): the
    // check time decides; a check past the window is flagged.
    const frozen = [...h.lines, line(1, "tick", 1250, { token: "1", g: T(1150) })];
    assert.equal(checkEpisode({ ...h, lines: frozen, deaths: [] }).metrics.demotedWork, 0);
    const late = [...h.lines, line(1, "tick", 1250, { token: "1", g: T(1210) })];
    const r3 = checkEpisode({ ...h, lines: late, deaths: [] });
    assert.equal(r3.metrics.demotedWork, 1);
    assert.match(r3.violations.join("\n"), /checked at \d+, printed at \d+/);
  });

  it("flags a token used by two processes", () => {
    const h = clean();
    const lines = h.lines.map((l) => (l.pid === 2 && l.token === "2" ? { ...l, token: "1" } : l));
    const writes = h.writes.map((w) => (w.pid === 2 ? { ...w, token: "1" } : w));
    const r = checkEpisode({ ...h, lines, writes });
    assert.equal(r.metrics.tokenReuse, 1);
    assert.match(r.violations.join("\n"), /token 1 was used by 2 processes/);
  });

  it("flags a slow or missing recovery", () => {
    const h = clean();
    // pid 1 works at 500 but is killed at 1000: the term in force at the
    // probe is pid 2's, whose first tick is at 2110.
    const early = checkEpisode({ ...h, healAt: T(500), faultAt: T(500) });
    assert.equal(early.metrics.healToLeaderMs, 1610);
    // Without the kill, pid 1's term is still in force at the probe: its tick at 500.
    const lines = [
      ...h.lines.filter((l) => l.pid !== 2 && l.event !== "state"),
      line(1, "renewed", 1000, { token: "1", until: T(1900) }),
      line(1, "state", 1500, { state: "leader", leader: "h1", token: "1" }),
      line(3, "state", 1501, { state: "follower", leader: "h1" }),
    ];
    const kept = checkEpisode({
      ...h,
      lines,
      deaths: [],
      healAt: T(500),
      faultAt: T(500),
      probeAt: T(1450),
      probed: [1, 3],
    });
    assert.deepEqual(kept.violations, []);
    assert.equal(kept.metrics.healToLeaderMs, 0);
    const late = checkEpisode({ ...h, recoverySlackMs: 0, healAt: T(800) });
    assert.match(
      late.violations.join("\n"),
      /took 1310 ms after heal \(bound ttl \+ retry \+ slack = 1200 ms\)/,
    );
    const none = checkEpisode({ ...h, healAt: T(5000), probeAt: T(5000) });
    assert.equal(none.metrics.healToLeaderMs, null);
    assert.match(none.violations.join("\n"), /no leader worked after the fault healed/);
    // An election is not work: pid 2 elected after the heal, but never ticked.
    const idle = h.lines.filter((l) => !(l.pid === 2 && l.event === "tick"));
    const elected = checkEpisode({ ...h, lines: idle });
    assert.equal(elected.metrics.healToLeaderMs, null);
    assert.match(elected.violations.join("\n"), /no leader worked after the fault healed/);
  });

  it("flags a log loop: too many identical lines in a minute", () => {
    const h = clean();
    const spam = Array.from({ length: 8 }, (_, i) =>
      line(3, "log", 1300 + i * 10, { level: "error", key: "error renew failed: expired" }),
    );
    const r = checkEpisode({ ...h, lines: [...h.lines, ...spam] });
    assert.equal(r.metrics.maxIdenticalLogLines, 8);
    assert.match(r.violations.join("\n"), /8 identical log lines in one minute \(bound 5\)/);
    // debug lines do not count; lines a minute apart do not add up
    const spread = Array.from({ length: 8 }, (_, i) =>
      line(3, "log", 1300 + i * 61_000, { level: "error", key: "error x" }),
    );
    assert.equal(
      checkEpisode({ ...h, lines: [...h.lines, ...spread] }).metrics.maxIdenticalLogLines,
      2,
    );
  });

  it("flags stuck processes: no answer, no known leader, wrong leader, two leaders", () => {
    const h = clean();
    const noAnswer = checkEpisode({ ...h, probed: [2, 3, 4] });
    assert.match(noAnswer.violations.join("\n"), /pid 4 did not answer the state probe/);
    const blind = h.lines.map((l) =>
      l.pid === 3 && l.event === "state" ? { ...l, leader: null } : l,
    );
    const r = checkEpisode({ ...h, lines: blind });
    assert.equal(r.metrics.stuck, 1);
    assert.match(
      r.violations.join("\n"),
      /pid 3 is stuck: state follower, believes leader is nobody/,
    );
    const wrong = h.lines.map((l) =>
      l.pid === 3 && l.event === "state" ? { ...l, leader: "h1" } : l,
    );
    assert.equal(checkEpisode({ ...h, lines: wrong }).metrics.stuck, 1);
    // A leader answer that does not match its live term (it already demoted).
    const stale = [...h.lines, line(2, "lead-end", 2500, { token: "2" })];
    assert.match(
      checkEpisode({ ...h, lines: stale }).violations.join("\n"),
      /pid 2 answered the probe as leader without a live term/,
    );
    // Elected between the probe's send time and its answer (a busy machine
    // delivers the signal late): the answer names the new term, which is live.
    const late: EpisodeHistory = {
      ...h,
      lines: [
        ...h.lines.filter((l) => !(l.pid === 2 && (l.event === "state" || l.event === "renewed"))),
        line(2, "lead-end", 2500, { token: "2" }),
        line(2, "lead-start", 2560, { token: "3", until: T(3400) }),
        line(2, "tick", 2565, { token: "3" }),
        line(2, "state", 2600, { state: "leader", leader: "h2", token: "3" }),
      ],
      writes: [...h.writes, { seq: 4, token: "3", pid: 2, t: T(2566) }],
      faultAt: T(2300),
      healAt: T(2400),
    };
    assert.deepEqual(checkEpisode(late).violations, []);
    // The same answer with the new election printed after it is still flagged.
    const after = late.lines.map((l) =>
      l.pid === 2 && l.event === "lead-start" && l.token === "3" ? { ...l, t: T(2610) } : l,
    );
    assert.match(
      checkEpisode({ ...late, lines: after }).violations.join("\n"),
      /pid 2 answered the probe as leader without a live term \(last: lead-end 2\)/,
    );
    const two = h.lines.map((l) =>
      l.pid === 3 && l.event === "state" ? { ...l, state: "leader" } : l,
    );
    assert.match(
      checkEpisode({ ...h, lines: two }).violations.join("\n"),
      /2 processes answered the probe as leader/,
    );
  });

  // Histories the checker before issue 17 accepted (each came back without a
  // violation); they must fail now.

  it("a store restart that gives the new term token 5 after 900, every write of it refused, fails", () => {
    const lines: WorkerLine[] = [
      line(1, "lead-start", 0, { token: "900", until: T(900) }),
      line(1, "tick", 10, { token: "900" }),
      line(1, "wrote", 12, { token: "900" }),
      line(1, "renewed", 300, { token: "900", until: T(1200) }),
      line(1, "tick", 1100, { token: "900" }),
      line(1, "wrote", 1102, { token: "900" }),
      line(1, "lead-end", 1250, { token: "900" }),
      line(1, "state", 2600, { state: "follower", leader: "h2" }),
      line(2, "lead-start", 2100, { token: "5", until: T(3000) }),
      line(2, "tick", 2110, { token: "5" }),
      line(2, "write-rejected", 2112, { token: "5" }),
      line(2, "tick", 2210, { token: "5" }),
      line(2, "write-rejected", 2212, { token: "5" }),
      line(2, "state", 2600, { state: "leader", leader: "h2", token: "5" }),
    ];
    const h: EpisodeHistory = {
      ...clean(),
      backend: "redis",
      fault: "restart-server",
      lines,
      writes: [
        { seq: 1, token: "900", pid: 1, t: T(10) },
        { seq: 2, token: "900", pid: 1, t: T(1100) },
      ],
      faultAt: T(1000),
      healAt: T(1050),
      probeAt: T(2550),
      deaths: [],
      probed: [1, 2],
      dataLostAt: T(1000),
    };
    const r = checkEpisode(h);
    assert.equal(r.metrics.tokenRegressions, 1);
    assert.equal(r.metrics.refusedWhileTrusted, 2);
    const v = r.violations.join("\n");
    assert.match(v, /pid 2 was elected at \d+ with token 5, not larger than token 900/);
    assert.match(
      v,
      /the store refused a fenced write of pid 2 \(token 5\) at \d+, while it trusted its term/,
    );
    // With a token above 900 and writes accepted, the same restart passes; a refusal of the old
    // term, elected before the store lost its data, is excused (§2: only durable stores keep leases).
    const fixed = lines.map((l) =>
      l.pid === 2 && l.token === "5"
        ? { ...l, token: "901", event: l.event === "write-rejected" ? "wrote" : l.event }
        : l,
    );
    const ok = checkEpisode({
      ...h,
      lines: [...fixed, line(1, "write-rejected", 1150, { token: "900" })],
      writes: [...h.writes, { seq: 3, token: "901", pid: 2, t: T(2110) }],
    });
    assert.deepEqual(ok.violations, []);
    assert.equal(ok.metrics.refused, 1);
    // Without the data loss, that refusal inside pid 1's trust window is a violation.
    const lost = checkEpisode({
      ...h,
      dataLostAt: undefined,
      lines: [...fixed, line(1, "write-rejected", 1150, { token: "900" })],
      writes: [...h.writes, { seq: 3, token: "901", pid: 2, t: T(2110) }],
    });
    assert.equal(lost.metrics.refusedWhileTrusted, 1);
  });

  it("a stale leader's refused write (outside its trust window) is fencing at work, not a violation", () => {
    const h = clean();
    const r = checkEpisode({
      ...h,
      deaths: [],
      lines: [...h.lines, line(1, "write-rejected", 2200, { token: "1" })],
    });
    assert.equal(r.metrics.refused, 1);
    assert.equal(r.metrics.refusedWhileTrusted, 0);
    assert.deepEqual(r.violations, []);
  });

  it("a dead leader named by both followers while the newly elected one demoted fails", () => {
    const h = clean();
    const lines: WorkerLine[] = [
      ...h.lines.filter((l) => l.event !== "state"),
      line(2, "lead-end", 2400, { token: "2" }),
      line(2, "state", 2600, { state: "follower", leader: "h1" }),
      line(3, "state", 2601, { state: "follower", leader: "h1" }),
    ];
    const r = checkEpisode({ ...h, lines });
    assert.equal(r.metrics.stuck, 2);
    assert.equal(r.metrics.healToLeaderMs, null);
    const v = r.violations.join("\n");
    assert.match(v, /no probed process answered as leader/);
    assert.match(v, /pid 2 is stuck: state follower, believes leader is h1/);
    assert.match(v, /pid 3 is stuck: state follower, believes leader is h1/);
  });

  it("a lone election after the heal, with no ticks, no writes and nobody probed, fails", () => {
    const h: EpisodeHistory = {
      ...clean(),
      lines: [line(2, "lead-start", 2100, { token: "2", until: T(3000) })],
      writes: [],
      deaths: [],
      probed: [],
    };
    const r = checkEpisode(h);
    const v = r.violations.join("\n");
    assert.match(v, /no process was probed/);
    assert.match(v, /no probed process answered as leader/);
    assert.match(v, /no leader worked after the fault healed/);
    assert.match(v, /the fenced resource accepted no write after the heal/);
  });

  it("summarizes per backend and fault, with percentiles and failing seeds", () => {
    const a = checkEpisode(clean());
    const b = checkEpisode({ ...clean(), seed: 7, probed: [9] });
    const s = summarize([a, b]);
    assert.equal(s.length, 1);
    assert.equal(s[0]!.episodes, 2);
    assert.equal(s[0]!.failed, 1);
    assert.deepEqual(s[0]!.failedSeeds, [7]);
    assert.equal(s[0]!.healToLeaderMs.p50, 1110);
    assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
    assert.equal(percentile([], 50), null);
  });
});
