import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { WorkerLine } from "./checker.js";
import { ledSince } from "./lost-term.js";

const line = (event: string, ms: number, token = "30"): WorkerLine => ({
  pid: 3,
  holder: "c2",
  event,
  t: String(BigInt(ms) * 1_000_000n),
  token,
});

describe("ledSince (a term on the promoted server, failover-lagging / Sentinel)", () => {
  it("counts a term elected before the harness saw the promotion and renewed after it", () => {
    // Chaos redis-sentinel:failover-lagging:1479544978: the client asked a
    // sentinel that already named the promoted replica and was elected (here
    // at 8192 ms) before the harness's two sentinels agreed (at most 54 ms
    // later; 8246 ms here); the term
    // then lived on, renewed every third of a ttl. Waiting for a lead-start
    // after healAt timed out after 7.4 s, and the lost term's holder, woken
    // then and probed at once, counted as stuck.
    const lines = [
      line("started", 3874),
      line("lead-start", 8192),
      line("tick", 8193),
      line("renewed", 8525),
      line("renewed", 8858),
    ];
    assert.equal(ledSince(lines, 8246n * 1_000_000n), true);
  });

  it("counts a term elected after the promotion", () => {
    assert.equal(ledSince([line("lead-start", 9000)], 8246n * 1_000_000n), true);
  });

  it("does not count a term that was not renewed after the promotion, nor other events", () => {
    // A term started on the old primary before it died: its renewals stop there.
    const lines = [
      line("lead-start", 5000, "20"),
      line("renewed", 5300, "20"),
      line("lead-end", 8400, "20"),
      line("tick", 8500, "20"),
      line("write-rejected", 8600, "20"),
      { ...line("state", 8700), token: undefined },
    ];
    assert.equal(ledSince(lines, 8246n * 1_000_000n), false);
    assert.equal(ledSince([], 0n), false);
  });
});
