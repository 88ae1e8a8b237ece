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
    assert.equal(r.metrics.healToLeaderMs, 1100);
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
    // probe is pid 2's, whose first work is at 2100.
    const early = checkEpisode({ ...h, healAt: T(500), faultAt: T(500) });
    assert.equal(early.metrics.healToLeaderMs, 1600);
    // Without the kill, pid 1's term is still in force at the probe: 0 ms.
    const lines = h.lines.filter((l) => l.pid !== 2);
    const kept = checkEpisode({ ...h, lines, deaths: [], healAt: T(500), faultAt: T(500) });
    assert.equal(kept.metrics.healToLeaderMs, 0);
    const late = checkEpisode({ ...h, recoverySlackMs: 0, healAt: T(800) });
    assert.match(
      late.violations.join("\n"),
      /took 1300 ms after heal \(bound ttl \+ retry \+ slack = 1200 ms\)/,
    );
    const none = checkEpisode({ ...h, healAt: T(5000), probeAt: T(5000) });
    assert.equal(none.metrics.healToLeaderMs, null);
    assert.match(none.violations.join("\n"), /no leader worked after the fault healed/);
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
    const two = h.lines.map((l) =>
      l.pid === 3 && l.event === "state" ? { ...l, state: "leader" } : l,
    );
    assert.match(
      checkEpisode({ ...h, lines: two }).violations.join("\n"),
      /2 processes answered the probe as leader/,
    );
  });

  it("summarizes per backend and fault, with percentiles and failing seeds", () => {
    const a = checkEpisode(clean());
    const b = checkEpisode({ ...clean(), seed: 7, probed: [9] });
    const s = summarize([a, b]);
    assert.equal(s.length, 1);
    assert.equal(s[0]!.episodes, 2);
    assert.equal(s[0]!.failed, 1);
    assert.deepEqual(s[0]!.failedSeeds, [7]);
    assert.equal(s[0]!.healToLeaderMs.p50, 1100);
    assert.equal(percentile([5, 1, 3, 2, 4], 50), 3);
    assert.equal(percentile([], 50), null);
  });
});
