import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createElector } from "../../src/elector/index.js";
import { withLease } from "../../src/elector/with-lease.js";
import { isStoreError, isTermEndedError } from "../../src/errors.js";
import { openStore } from "../../src/open.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";
import { deferred, TTL } from "../leader/setup.js";

function world() {
  const clock = new FakeClock();
  const store = new MemoryStore({ clock });
  const opts = (holderId: string) => ({ ttlMs: TTL, clock, holderId, random: () => 0.5 });
  return { clock, store, opts };
}

describe("withLease: lock-style leadership", () => {
  it("runs fn while the lease is held, renews past the ttl, releases at the end", async () => {
    const { clock, store, opts } = world();
    const gate = deferred();
    let seen: bigint | null = null;
    const p = withLease(
      store,
      "report",
      async (term) => {
        seen = term.token;
        assert.equal((await store.read("report"))?.holder, "a");
        await gate.promise;
        assert.equal(term.signal.aborted, false, "still held after 3 ttls: renewed");
        return "done";
      },
      opts("a"),
    );
    await clock.advance(0);
    assert.equal(seen, 1n);
    await clock.advance(3 * TTL);
    const held = await store.read("report");
    assert.equal(held?.holder, "a");
    assert.equal(held?.token, 1n, "renewing keeps the token");
    gate.resolve();
    await clock.advance(0);
    assert.equal(await p, "done");
    assert.equal(await store.read("report"), null, "released at once, not left to expire");
  });

  it("a second caller waits for the first, never overlapping; fn's error is rethrown after release", async () => {
    const { clock, store, opts } = world();
    const events: string[] = [];
    const gate = deferred();
    const a = withLease(
      store,
      "one",
      async (t) => {
        events.push(`a start ${t.token}`);
        await gate.promise;
        events.push("a end");
        throw new Error("a failed");
      },
      opts("a"),
    );
    await clock.advance(0);
    const b = withLease(
      store,
      "one",
      async (t) => {
        events.push(`b start ${t.token}`);
      },
      opts("b"),
    );
    await clock.advance(2 * TTL);
    assert.deepEqual(events, ["a start 1"], "b waits while a holds the lease");
    gate.resolve();
    await assert.rejects(a, /a failed/);
    await clock.advanceUntil(() => events.length === 3, 5 * TTL);
    await b;
    assert.deepEqual(events, ["a start 1", "a end", "b start 2"]);
  });

  it("a lost lease aborts term.signal with the reason; the caller's signal gives up waiting", async () => {
    const { clock, store, opts } = world();
    let reason: unknown = null;
    const p = withLease(
      store,
      "lost",
      (term) =>
        new Promise<string>((resolve) => {
          term.signal.addEventListener("abort", () => {
            reason = term.signal.reason;
            resolve("stopped");
          });
        }),
      opts("a"),
    );
    await clock.advance(0);
    await store.forceRelease("lost");
    assert.ok((await store.acquire("lost", "thief", 100 * TTL)).acquired);
    await clock.advance(TTL);
    assert.equal(await p, "stopped");
    assert.ok(isTermEndedError(reason) && reason.reason === "lost", String(reason));
    assert.equal((await store.read("lost"))?.holder, "thief", "the thief's lease is untouched");

    const ac = new AbortController();
    let ran = false;
    const waiting = withLease(
      store,
      "lost",
      () => {
        ran = true;
      },
      { ...opts("b"), signal: ac.signal },
    );
    await clock.advance(TTL);
    ac.abort(new Error("gave up"));
    await assert.rejects(waiting, /gave up/);
    assert.equal(ran, false);
    assert.equal((await store.read("lost"))?.holder, "thief");
  });
});

describe("waitForLeadership and Symbol.asyncDispose", () => {
  it("waitForLeadership resolves with the term, honours its signal, and ends on stop()", async () => {
    const { clock, store, opts } = world();
    const a = createElector({ store, name: "w", ...opts("a") });
    const b = createElector({ store, name: "w", ...opts("b") });
    const wa = a.waitForLeadership();
    await a.start();
    await clock.advance(0);
    const term = await wa;
    assert.equal(term.token, 1n);
    assert.equal(await a.waitForLeadership(), term, "at once while leading");
    await b.start();
    const ac = new AbortController();
    const wb = b.waitForLeadership({ signal: ac.signal });
    ac.abort(new Error("not now"));
    await assert.rejects(wb, /not now/);
    const wb2 = assert.rejects(
      b.waitForLeadership(),
      (e: unknown) => isStoreError(e) && e.kind === "closed",
    );
    const stopped = b.stop();
    await clock.advance(0);
    await wb2;
    await stopped;
    const s = a.stop();
    await clock.advance(0);
    await s;
  });

  it("await using: an elector stops (releasing its lease) and a store closes at the end of the scope", async () => {
    const { clock, store, opts } = world();
    {
      await using e = createElector({ store, name: "scoped", ...opts("a") });
      await e.start();
      await clock.advance(0);
      assert.equal(e.isLeader(), true);
    }
    assert.equal(await store.read("scoped"), null, "released when the scope ended");
    let closed: unknown;
    {
      await using s = await openStore("memory:");
      closed = s;
      await s.acquire("x", "a", 1000);
    }
    await assert.rejects((closed as MemoryStore).acquire("x", "b", 1000), /closed/);
  });
});
