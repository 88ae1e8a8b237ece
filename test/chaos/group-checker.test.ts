import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkGroupEpisode,
  type GroupHistory,
  type GroupLine,
  type PartitionWrite,
} from "./group-checker.js";

/** ms → monotonic ns string, from an arbitrary origin. */
const T = (ms: number) => (BigInt(Math.round(ms * 1000)) * 1000n + 10n ** 12n).toString();

function line(pid: number, event: string, ms: number, extra: Partial<GroupLine> = {}): GroupLine {
  return { pid, holder: `h${pid}`, event, t: T(ms), ...extra };
}

/**
 * One term of partition `p`: elected at `from`, renewed every 300 ms (window
 * 900 ms), a tick with an accepted write every 250 ms until `to`.
 */
function term(pid: number, p: number, token: string, from: number, to: number): GroupLine[] {
  const out = [line(pid, "lead-start", from, { p, token, until: T(from + 900) })];
  for (let t = from + 300; t < to; t += 300)
    out.push(line(pid, "renewed", t, { p, token, until: T(t + 900) }));
  for (let t = from + 10; t < to; t += 250)
    out.push(line(pid, "wrote", t + 1, { p, token, s: T(t) }));
  return out;
}

/** The accepted writes of `lines`, per partition in time order. */
function writesOf(lines: readonly GroupLine[]): PartitionWrite[] {
  const seq = new Map<number, number>();
  return lines
    .filter((l) => l.event === "wrote")
    .sort((a, b) => (BigInt(a.t) < BigInt(b.t) ? -1 : 1))
    .map((l) => {
      const n = (seq.get(l.p!) ?? 0) + 1;
      seq.set(l.p!, n);
      return { part: l.p!, seq: n, token: l.token!, pid: l.pid, t: l.t };
    });
}

/**
 * Four partitions, three members. Pid 3 owns partition 3 and is SIGKILLed at
 * 1000; pid 2 takes partition 3 at 2000 with token 2. At the probe (2600)
 * pid 1 owns 0 and 1, pid 2 owns 2 and 3.
 */
function clean(over: { p3From?: number; probe?: number } = {}): GroupHistory {
  const from = over.p3From ?? 2000;
  const probe = over.probe ?? 2600;
  const lines = [
    ...term(1, 0, "1", 0, probe),
    ...term(1, 1, "1", 0, probe),
    ...term(2, 2, "1", 0, probe),
    ...term(3, 3, "1", 0, 1000),
    ...term(2, 3, "2", from, probe),
    line(1, "state", probe + 1, { owned: [0, 1], tokens: ["1", "1"] }),
    line(2, "state", probe + 2, { owned: [2, 3], tokens: ["1", "2"] }),
  ];
  return {
    backend: "test",
    fault: "group/kill-leader",
    seed: 7,
    partitions: 4,
    ttlMs: 1000,
    retryMs: 200,
    tickMs: 250,
    safetyBoundMs: 0,
    recoverySlackMs: 250,
    balanceBoundMs: 2500,
    lines,
    writes: writesOf(lines),
    faultAt: T(1000),
    healAt: T(1000),
    settleAt: T(1000),
    probeAt: T(probe),
    deaths: [{ pid: 3, t: T(1000) }],
    pauses: [],
    probed: [1, 2],
  };
}

const has = (vs: readonly string[], re: RegExp) =>
  assert.ok(
    vs.some((v) => re.test(v)),
    `expected a violation matching ${re}, got:\n${vs.join("\n")}`,
  );

describe("chaos group checker", () => {
  it("passes a clean history and measures it", () => {
    const r = checkGroupEpisode(clean());
    assert.deepEqual(r.violations, []);
    assert.equal(
      r.metrics.maxOverlapMs,
      0,
      "trust windows of different partitions never overlap-count",
    );
    assert.equal(r.metrics.demotedWork, 0);
    assert.equal(r.metrics.balanceMs, 1600);
    // Partition 3: its last tick before the kill was at 760, the heal at 1000, pid 2's first tick at 2010.
    assert.equal(r.metrics.maxUnownedMs, 1010);
    assert.equal(r.metrics.terms, 5);
  });

  it("measures the time to balance from the first of the balanced probes that ended the episode", () => {
    // Probes went on past a balanced one until every partition had also written (group:postgres:reset:158343810).
    const late = clean({ probe: 4000 });
    assert.equal(checkGroupEpisode(late).metrics.balanceMs, 3000);
    has(checkGroupEpisode(late).violations, /the fleet was balanced 3000 ms after it settled/);
    const r = checkGroupEpisode({ ...late, balancedAt: T(3000) });
    assert.equal(r.metrics.balanceMs, 2000);
    assert.deepEqual(r.violations, []);
  });

  it("fails a partition elected with a token not larger than its previous term's", () => {
    const h = clean();
    const lines = h.lines.map((l) => (l.pid === 3 && l.token === "1" ? { ...l, token: "5" } : l));
    const r = checkGroupEpisode({ ...h, lines, writes: writesOf(lines) });
    has(r.violations, /partition 3: pid 2 was elected .* with token 2, not larger than token 5/);
    assert.equal(r.metrics.tokenRegressions, 1);
  });

  it("fails a token of a partition used by two processes", () => {
    const h = clean();
    const writes = [...h.writes, { part: 0, seq: 999, token: "1", pid: 2, t: T(2500) }];
    const r = checkGroupEpisode({ ...h, writes });
    has(r.violations, /partition 0: token 1 was used by 2 processes: 1, 2/);
    assert.equal(r.metrics.tokenReuse, 1);
  });

  it("fails a fenced write of a partition accepted after a newer token's", () => {
    const h = clean();
    const writes = [...h.writes, { part: 3, seq: 999, token: "1", pid: 3, t: T(2550) }];
    const r = checkGroupEpisode({ ...h, writes });
    has(r.violations, /partition 3: fenced write #999 accepted with token 1 after token 2/);
    assert.equal(r.metrics.fencedOutOfOrder, 1);
  });

  it("fails two processes trusting one partition at once (bound 0 ms)", () => {
    const r = checkGroupEpisode(clean({ p3From: 900 }));
    has(
      r.violations,
      /partition 3: two processes trusted it at once for 100\.000 ms \(bound 0 ms\)/,
    );
    assert.equal(r.metrics.maxOverlapMs, 100);
  });

  it("fails work of a partition after its term ended", () => {
    const h = clean();
    const lines = [
      ...h.lines.filter((l) => !(l.pid === 1 && l.p === 1 && BigInt(l.t) > BigInt(T(2000)))),
      line(1, "lead-end", 2000, { p: 1, token: "1", reason: "resigned" } as Partial<GroupLine>),
      line(1, "write-error", 2105, { p: 1, token: "1", s: T(2100) }),
      ...term(2, 1, "2", 2050, 2600),
    ];
    const r = checkGroupEpisode({ ...h, lines, writes: writesOf(lines) });
    has(r.violations, /partition 1: work by a demoted process: pid 1 ticked with token 1/);
    assert.equal(r.metrics.demotedWork, 1);
  });

  it("judges a tick by when its leadership check began, not when its first line ran", () => {
    // group:etcd:pause-long:1400743703: a member frozen (SIGSTOP) between the library's check,
    // inside the trust window, and the tick's first line, which then read a time after the resume.
    const h = clean();
    const cut = (l: GroupLine) => !(l.pid === 1 && l.p === 1 && BigInt(l.t) > BigInt(T(1000)));
    const frozen = [
      ...h.lines.filter(cut),
      line(1, "lead-end", 2200, { p: 1, token: "1", reason: "expired" } as Partial<GroupLine>),
      ...term(2, 1, "2", 2300, 2600),
    ];
    // Checked at 1001 (trusted: renewed at 900 until 1800), started at 2150.
    const late = [
      ...frozen,
      line(1, "write-rejected", 2160, { p: 1, token: "1", s: T(2150), g: T(1001) }),
    ];
    const ok = checkGroupEpisode({ ...h, lines: late, writes: writesOf(late) });
    assert.equal(ok.metrics.demotedWork, 0, ok.violations.join("\n"));
    // Checked at 2150 too: the gate let it through outside its window.
    const bad = [
      ...frozen,
      line(1, "write-rejected", 2160, { p: 1, token: "1", s: T(2150), g: T(2150) }),
    ];
    const r = checkGroupEpisode({ ...h, lines: bad, writes: writesOf(bad) });
    has(
      r.violations,
      /partition 1: work by a demoted process: pid 1 ticked with token 1 \(checked at/,
    );
    assert.equal(r.metrics.demotedWork, 1);
  });

  it("fails a fenced write refused while its writer trusted the partition", () => {
    const h = clean();
    const lines = [...h.lines, line(1, "write-rejected", 1501, { p: 0, token: "1", s: T(1500) })];
    const r = checkGroupEpisode({ ...h, lines });
    has(r.violations, /partition 0: the store refused a fenced write of pid 1 \(token 1\)/);
    assert.equal(r.metrics.refusedWhileTrusted, 1);
    // Excused for a term elected before the store lost its data.
    const lost = checkGroupEpisode({ ...h, lines, dataLostAt: T(1400) });
    assert.deepEqual(lost.violations, []);
  });

  it("fails a partition left without work after the heal beyond ttl + retry + tick + slack", () => {
    const r = checkGroupEpisode(clean({ p3From: 2800, probe: 3000 }));
    has(
      r.violations,
      /partition 3: no process worked it for 1810 ms .* \(bound ttl \+ retry \+ tick \+ slack = 1700 ms\)/,
    );
  });

  it("fails a partition with no accepted write after the heal", () => {
    const h = clean();
    const writes = h.writes.filter((w) => !(w.part === 2 && BigInt(w.t) >= BigInt(T(1000))));
    const r = checkGroupEpisode({ ...h, writes });
    has(r.violations, /partition 2: the fenced resource accepted no write after the heal/);
  });

  it("fails an unbalanced fleet, a partition without owner and one with two at the probe", () => {
    const h = clean();
    const states = (a: number[], b: number[]) => [
      ...h.lines.filter((l) => l.event !== "state"),
      line(1, "state", 2601, { owned: a }),
      line(2, "state", 2602, { owned: b }),
    ];
    const r1 = checkGroupEpisode({ ...h, lines: states([0], [1, 2, 3]) });
    has(
      r1.violations,
      /pid \d owns 1 partitions at the probe; with 2 live members each should own 2/,
    );
    assert.equal(r1.metrics.balanceMs, null);
    const r2 = checkGroupEpisode({ ...h, lines: states([0, 1], [2]) });
    has(r2.violations, /partition 3 is owned by no probed process at the probe/);
    const r3 = checkGroupEpisode({ ...h, lines: states([0, 1, 3], [2, 3]) });
    has(r3.violations, /partition 3 is owned by 2 processes/);
    const r4 = checkGroupEpisode({ ...h, probed: [1, 2, 4] });
    has(r4.violations, /pid 4 did not answer the state probe/);
    assert.equal(r4.metrics.stuck, 1);
  });

  it("fails a fleet balanced later than 2 × ttl + slack after it settled", () => {
    const r = checkGroupEpisode({ ...clean(), settleAt: T(0) });
    has(r.violations, /balanced 2600 ms after it settled \(bound 2 × ttl \+ slack = 2500 ms\)/);
  });
});
