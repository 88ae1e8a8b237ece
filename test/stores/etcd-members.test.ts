/**
 * How the etcd store's member policy sends one call more than once, in a
 * cluster. A write that reached a follower while the raft leader died was
 * forwarded to the dead leader and lost: it waited for its whole deadline
 * (3 s) although the two members left had a new leader within a second, and
 * the partitions whose acquires and term ends it carried stayed unowned that
 * long (chaos group:etcd-cluster:rolling-restart:1610901752). Writes marked
 * resendable (a second copy can only fail) are sent again while unanswered;
 * other writes never are. Driven without a server, on mocked timers.
 */
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import {
  idempotent,
  memberPolicy,
  RESEND_ATTEMPTS,
  resendable,
} from "../../src/stores/etcd/members.js";

const HEDGE_MS = 250;

/** Lets the policy's promise callbacks run (setImmediate is not mocked). */
const flush = () => new Promise<void>((r) => setImmediate(r));

/** A call whose copies are counted and answered by hand. */
function call() {
  const copies: { answer: (v: string) => void; fail: (e: Error) => void }[] = [];
  const fn = () =>
    new Promise<string>((answer, fail) => {
      copies.push({ answer, fail });
    });
  return { copies, fn };
}

describe("etcd member policy: copies of one call", () => {
  const policy = (hostCount: number) =>
    memberPolicy({
      hostCount,
      isRecoverable: (e) => e.message === "UNAVAILABLE",
      hedgeMs: HEDGE_MS,
      cooldownMs: 1000,
      watchBackoff: undefined as never,
    }).global!;

  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("a resendable write left unanswered is sent again after hedgeMs, then after twice that; the first answer wins", async () => {
    const { copies, fn } = call();
    const p = resendable(() => policy(3).execute(fn));
    await flush();
    assert.equal(copies.length, 1);
    mock.timers.tick(HEDGE_MS - 1);
    await flush();
    assert.equal(copies.length, 1, "not before hedgeMs");
    mock.timers.tick(1);
    await flush();
    assert.equal(copies.length, 2, "a second copy at hedgeMs");
    mock.timers.tick(2 * HEDGE_MS - 1);
    await flush();
    assert.equal(copies.length, 2, "the wait doubles");
    mock.timers.tick(1);
    await flush();
    assert.equal(copies.length, 3, "a third copy at 3 × hedgeMs");
    copies[2]!.answer("third");
    copies[0]!.answer("first, too late");
    assert.equal(await p, "third");
    mock.timers.tick(60_000);
    await flush();
    assert.equal(copies.length, 3, "nothing more once answered");
  });

  it("sends at most RESEND_ATTEMPTS copies, more than there are members", async () => {
    const { copies, fn } = call();
    const p = resendable(() => policy(3).execute(fn));
    for (let k = 0; k < 10; k++) {
      mock.timers.tick(HEDGE_MS * 2 ** k);
      await flush();
    }
    assert.equal(copies.length, RESEND_ATTEMPTS);
    assert.ok(RESEND_ATTEMPTS > 3);
    for (const c of copies) c.fail(new Error("DEADLINE_EXCEEDED"));
    await assert.rejects(p, /DEADLINE_EXCEEDED/);
  });

  it("a plain write is sent once however long it waits; a retryable failure moves it on", async () => {
    const { copies, fn } = call();
    const p = policy(3).execute(fn);
    await flush();
    mock.timers.tick(60_000);
    await flush();
    assert.equal(copies.length, 1, "a write not marked resendable is never sent twice unanswered");
    copies[0]!.fail(new Error("UNAVAILABLE"));
    await flush();
    assert.equal(copies.length, 2, "a retryable failure goes to the next member");
    copies[1]!.answer("second");
    assert.equal(await p, "second");
  });

  it("a read is hedged once per member", async () => {
    const { copies, fn } = call();
    const p = idempotent(() => policy(3).execute(fn));
    for (let k = 0; k < 10; k++) {
      mock.timers.tick(HEDGE_MS);
      await flush();
    }
    assert.equal(copies.length, 3);
    copies[1]!.answer("second");
    assert.equal(await p, "second");
  });

  it("a single member gets one copy of everything", async () => {
    const { copies, fn } = call();
    const p = resendable(() => policy(1).execute(fn));
    mock.timers.tick(60_000);
    await flush();
    assert.equal(copies.length, 1);
    copies[0]!.answer("only");
    assert.equal(await p, "only");
  });
});
