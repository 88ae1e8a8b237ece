import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Checker, Violation, type ViolationKind } from "./checker.js";

/** The simulator's invariants on hand-written histories: each one fires, and only when it should. */
const timing = { ttlMs: 1_000, safetyMarginMs: 100, minLogStepMs: 90 };

function throwsKind(kind: ViolationKind, fn: () => void): void {
  assert.throws(fn, (e: unknown) => e instanceof Violation && e.kind === kind);
}

describe("simulation checker", () => {
  it("trust windows are rebuilt from sends and replies: work after the window, or with none, is flagged", () => {
    const c = new Checker(timing);
    c.onAcquireReply(1, "a", 1n, 0, 5); // sent at 0 → window [5, 900)
    c.trust(1, "a", 1n, 899, "tick");
    throwsKind("outside-window", () => c.trust(1, "a", 1n, 900, "tick"));
    c.onRenewReply(1, 1n, 300, 310, true); // renewal sent at 300 → [.., 1200)
    c.trust(1, "a", 1n, 1_199, "tick");
    c.onRenewReply(1, 1n, 600, 1_250, true); // its reply came after the window: no extension
    throwsKind("outside-window", () => c.trust(1, "a", 1n, 1_250, "probe"));
    throwsKind("outside-window", () => c.trust(2, "b", 7n, 10, "tick"));
    c.onAcquireReply(3, "c", 9n, 0, 950); // the reply came after its window: never trusted
    throwsKind("outside-window", () => c.trust(3, "c", 9n, 950, "tick"));
  });

  it("two holders trusting at one instant are flagged, unless the earlier lease was force-released", () => {
    const c = new Checker(timing);
    c.onAcquireReply(1, "a", 1n, 0, 1);
    c.onAcquireReply(2, "b", 2n, 400, 401);
    c.trust(1, "a", 1n, 500, "tick");
    throwsKind("two-holders", () => c.trust(2, "b", 2n, 500, "tick"));
    const f = new Checker(timing);
    f.onAcquireReply(1, "a", 1n, 0, 1);
    f.trust(1, "a", 1n, 300, "tick");
    f.onForceRelease(1n, 350);
    f.onAcquireReply(2, "b", 2n, 360, 361);
    f.trust(2, "b", 2n, 370, "tick");
  });

  it("tokens must increase per grant; fenced writes may not go back", () => {
    const c = new Checker(timing);
    c.onGrant(1n, 0);
    c.onGrant(2n, 1);
    throwsKind("token-order", () => c.onGrant(2n, 2));
    c.onFencedWrite(5n, "k", true, 3);
    c.onFencedWrite(4n, "k", false, 4); // rejected: fine
    throwsKind("fenced-order", () => c.onFencedWrite(4n, "k", true, 5));
  });

  it("service instances: stopped by their own term, once, and by the end of its window", () => {
    const c = new Checker(timing);
    c.onAcquireReply(1, "a", 1n, 0, 1);
    const i = c.serviceStarted(1, 1n, 10);
    throwsKind("stale-service", () => c.serviceStopCalled(1, i, 2n, 20));
    c.beforeAdvance(899);
    throwsKind("stale-service", () => c.beforeAdvance(900));
    c.serviceStopCalled(1, i, 1n, 900);
    c.beforeAdvance(901);
    const j = c.serviceStarted(1, 1n, 20);
    c.onCrash(1, 30); // a crash takes its instances with it
    c.beforeAdvance(5_000);
    assert.ok(j > i);
  });

  it("a repeated log line within one backoff step is flagged, unless a notification woke the loop", () => {
    const c = new Checker(timing);
    c.log(1, "warn", "store acquire failed", { attempt: 1, err: new Error("down") }, 0);
    c.log(1, "warn", "store acquire failed", { attempt: 2, err: new Error("down") }, 95);
    throwsKind("log-repeat", () =>
      c.log(1, "warn", "store acquire failed", { attempt: 3, err: new Error("down") }, 100),
    );
    c.log(2, "warn", "store acquire failed", { err: new Error("down") }, 0);
    c.onNotify(2, 2);
    c.log(2, "warn", "store acquire failed", { err: new Error("down") }, 3);
  });
});
