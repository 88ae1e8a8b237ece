import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createElector, isConfigError, StoreError } from "../../src/index.js";
import { Acquirer, acquirerFor } from "../../src/renewal/index.js";
import type {
  AcquireItem,
  AcquireResult,
  LeaseEvent,
  LeaseStore,
  Unwatch,
} from "../../src/store/types.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";

/** A memory store that records each acquireMany round trip and can script its next answer. */
class AcquireStore extends MemoryStore {
  /** The lease names of each acquireMany call. */
  batches: string[][] = [];
  singles = 0;
  /** Set: the next acquireMany calls wait for this promise before answering. */
  gate: Promise<void> | null = null;
  /** Set: the next acquireMany calls throw it. */
  failWith: Error | null = null;
  /** A name whose record the store "cannot read": acquire of it throws a schema error. */
  bad: string | null = null;
  constructor(clock: FakeClock) {
    super({ clock });
  }
  override async acquireMany(items: readonly AcquireItem[]): Promise<AcquireResult[]> {
    this.batches.push(items.map((i) => i.name));
    if (this.gate) await this.gate;
    if (this.failWith) throw this.failWith;
    if (this.bad && items.some((i) => i.name === this.bad)) throw this.schema();
    return super.acquireMany(items);
  }
  override async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    this.singles += 1;
    if (name === this.bad) throw this.schema();
    return super.acquire(name, holder, ttlMs);
  }
  private schema(): StoreError {
    return new StoreError("not a lease", { transient: false, kind: "schema" });
  }
}

/** The same store without acquireMany. */
function withoutAcquireMany(store: MemoryStore): LeaseStore & { singles: number } {
  const s = Object.assign(Object.create(null) as object, {
    kind: store.kind,
    notifies: false,
    singles: 0,
    acquire(name: string, holder: string, ttlMs: number) {
      s.singles += 1;
      return store.acquire(name, holder, ttlMs);
    },
    renew: store.renew.bind(store),
    release: store.release.bind(store),
    read: store.read.bind(store),
    list: store.list.bind(store),
    forceRelease: store.forceRelease.bind(store),
    putFenced: store.putFenced.bind(store),
    getFenced: store.getFenced.bind(store),
    close: store.close.bind(store),
  });
  return s as LeaseStore & { singles: number };
}

describe("acquirer", () => {
  it("acquires issued in one turn go as batches of at most batchSize, each request its own answer", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    await store.acquire("l3", "other", 60_000);
    store.singles = 0;
    const a = new Acquirer(store, clock, { batchSize: 4 });
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => a.acquire(`l${i}`, "me", 1000)),
    );
    assert.deepEqual(
      store.batches.map((b) => b.length),
      [4, 4, 2],
    );
    assert.equal(store.singles, 0);
    for (const [i, ans] of answers.entries()) {
      if (i === 3) {
        assert.ok(!ans.result.acquired);
        assert.equal(ans.result.current?.holder, "other");
      } else {
        assert.ok(ans.result.acquired, `l${i}`);
        assert.equal(ans.result.lease.name, `l${i}`);
      }
    }
    assert.deepEqual(a.stats(), { batches: 3, sent: 10, fallbacks: 0, dropped: 0 });
  });

  it("the answer carries the batch's send time, not the time it came back", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    const a = new Acquirer(store, clock);
    let open = () => {};
    store.gate = new Promise<void>((r) => {
      open = r;
    });
    const sentAt = clock.now();
    const p = a.acquire("x", "me", 1000);
    await clock.advance(300);
    open();
    const ans = await p;
    assert.ok(ans.result.acquired);
    assert.equal(ans.sentAt, sentAt);
  });

  it("requests of a later turn go in a later batch", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    const a = new Acquirer(store, clock);
    await Promise.all([a.acquire("a", "me", 1000), a.acquire("b", "me", 1000)]);
    await a.acquire("c", "me", 1000);
    assert.deepEqual(store.batches, [["a", "b"], ["c"]]);
  });

  it("at most MAX_IN_FLIGHT batches are out: requests of later turns wait and leave together", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    const a = new Acquirer(store, clock, { batchSize: 3 });
    let open = () => {};
    store.gate = new Promise<void>((r) => {
      open = r;
    });
    const ps: Promise<unknown>[] = [];
    for (let i = 0; i < 10; i++) {
      ps.push(a.acquire(`t${i}`, "me", 1000)); // one request per turn
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(
      store.batches.map((b) => b.length),
      [1, 1, 1, 1],
    );
    open();
    await Promise.all(ps);
    const sizes = store.batches.map((b) => b.length);
    assert.deepEqual(sizes.slice(0, 4), [1, 1, 1, 1]);
    assert.equal(
      sizes.reduce((x, y) => x + y, 0),
      10,
    );
    assert.ok(sizes.length <= 6 && sizes.every((n) => n <= 3), JSON.stringify(sizes));
  });

  it("a batch that never comes back stops holding the others once its ttl has passed", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    const a = new Acquirer(store, clock);
    store.gate = new Promise<void>(() => {});
    for (let i = 0; i < 4; i++) {
      void a.acquire(`h${i}`, "me", 1000);
      await new Promise((r) => setImmediate(r));
    }
    void a.acquire("late", "me", 1000);
    await new Promise((r) => setImmediate(r));
    assert.equal(store.batches.length, 4);
    await clock.advance(999);
    assert.equal(store.batches.length, 4);
    await clock.advance(1);
    assert.deepEqual(store.batches.at(-1), ["late"]);
  });

  it("a request still queued when its caller stopped waiting is not sent", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    const a = new Acquirer(store, clock);
    let open = () => {};
    store.gate = new Promise<void>((r) => {
      open = r;
    });
    const first: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) {
      first.push(a.acquire(`f${i}`, "me", 60_000)); // four batches out
      await new Promise((r) => setImmediate(r));
    }
    const stale = a.acquire("stale", "me", 60_000, clock.now() + 100);
    const live = a.acquire("live", "me", 60_000, clock.now() + 10_000);
    stale.catch(() => {});
    await clock.advance(100);
    open();
    await Promise.all(first);
    await assert.rejects(stale, (e: StoreError) => e.kind === "timeout" && e.transient);
    assert.ok((await live).result.acquired);
    assert.ok(!store.batches.flat().includes("stale"));
    assert.equal(a.stats().dropped, 1);
  });

  it("an answer timeout counts from the batch's send, with one timer per batch", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    const a = new Acquirer(store, clock);
    let open = () => {};
    store.gate = new Promise<void>((r) => {
      open = r;
    });
    const first: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) {
      const p = a.acquire(`f${i}`, "me", 60_000, Number.POSITIVE_INFINITY, 1000);
      p.catch(() => {});
      first.push(p); // four batches out, sent at 0, never answered before their timeout
      await new Promise((r) => setImmediate(r));
    }
    // Queued behind them (not sent): its own 1 000 ms timeout has not started.
    const queued = a.acquire("queued", "me", 60_000, Number.POSITIVE_INFINITY, 1000);
    queued.catch(() => {});
    await clock.advance(999);
    let settled = false;
    void Promise.allSettled(first).then(() => {
      settled = true;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, "not timed out before 1 000 ms after the send");
    await clock.advance(1);
    for (const p of first)
      await assert.rejects(p, (e: StoreError) => e.kind === "timeout" && e.transient);
    // Still queued: the four batches count as out until their ttl, so it is not sent yet and
    // has not timed out, though it was asked for over 1 000 ms ago.
    assert.ok(!store.batches.flat().includes("queued"));
    store.gate = null;
    await clock.advance(60_000); // the four stop counting as out; "queued" goes, and is answered
    assert.ok((await queued).result.acquired);
    open();
  });

  it("without acquireMany: acquire per lease", async () => {
    const clock = new FakeClock();
    const store = withoutAcquireMany(new MemoryStore({ clock }));
    const a = new Acquirer(store, clock);
    const answers = await Promise.all([a.acquire("a", "me", 1000), a.acquire("b", "me", 1000)]);
    assert.equal(store.singles, 2);
    assert.ok(answers.every((x) => x.result.acquired));
  });

  it("a batch that fails as a whole fails each request with the store's error", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    const a = new Acquirer(store, clock);
    const err = new StoreError("connection reset", { transient: true, kind: "connection" });
    store.failWith = err;
    const rs = await Promise.allSettled([a.acquire("a", "me", 1000), a.acquire("b", "me", 1000)]);
    assert.deepEqual(
      rs.map((r) => (r.status === "rejected" ? r.reason : null)),
      [err, err],
    );
    assert.equal(store.singles, 0);
  });

  it("a batch refused for one unreadable record: each item alone, only that one fails", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    store.bad = "b";
    const a = new Acquirer(store, clock);
    const rs = await Promise.allSettled([
      a.acquire("a", "me", 1000),
      a.acquire("b", "me", 1000),
      a.acquire("c", "me", 1000),
    ]);
    assert.equal(rs[0]?.status === "fulfilled" && rs[0].value.result.acquired, true);
    assert.equal(rs[1]?.status, "rejected");
    assert.equal(rs[2]?.status === "fulfilled" && rs[2].value.result.acquired, true);
    assert.equal(store.singles, 3);
    assert.equal(a.stats().fallbacks, 1);
  });

  it("batchSize is checked; acquirerFor shares one acquirer per store and clock", () => {
    const clock = new FakeClock();
    const store = new MemoryStore({ clock });
    assert.throws(() => new Acquirer(store, clock, { batchSize: 0 }), isConfigError);
    const one = acquirerFor(store, { clock });
    assert.equal(acquirerFor(store, { clock }), one);
    assert.notEqual(acquirerFor(store, { clock: new FakeClock() }), one);
    acquirerFor(store, { clock, batchSize: 7 });
    assert.equal(one.batchSize, 7);
  });

  it("electors started together campaign in one acquireMany; each wins its own lease", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    await store.acquire("e7", "other", 60_000);
    store.singles = 0;
    const electors = Array.from({ length: 20 }, (_, i) =>
      createElector({
        store,
        name: `e${i}`,
        ttlMs: 1000,
        clock,
        holderId: "me",
        random: () => 0.5,
      }),
    );
    await Promise.all(electors.map((e) => e.start()));
    await clock.advance(0);
    // One batch for all 20; e7, found held by an acquire sent before its watch was up, asks
    // once more when the watch is up (a release in between would not have been pushed).
    assert.equal(store.batches.length, 2, `batches: ${JSON.stringify(store.batches)}`);
    assert.equal(store.batches[0]?.length, 20);
    assert.deepEqual(store.batches[1], ["e7"]);
    assert.equal(store.singles, 0);
    for (const [i, e] of electors.entries()) assert.equal(e.isLeader(), i !== 7, `e${i}`);
    assert.equal(electors[7]?.leader()?.holder, "other");
    const stop = Promise.all(electors.map((e) => e.stop()));
    await clock.advance(0);
    await stop;
  });

  it("the first acquire goes out beside the watch; a release before the watch was up is not missed", async () => {
    const clock = new FakeClock();
    let open = () => {};
    const gate = new Promise<void>((r) => {
      open = r;
    });
    /** A store whose watches come up only when the test opens the gate. */
    class SlowWatch extends AcquireStore {
      override async watch(name: string, fn: (e: LeaseEvent) => void): Promise<Unwatch> {
        await gate;
        return super.watch(name, fn);
      }
    }
    const store = new SlowWatch(clock);
    const held = await store.acquire("x", "other", 60_000);
    assert.ok(held.acquired);
    const e = createElector({
      store,
      name: "x",
      ttlMs: 1000,
      retryMs: 500,
      clock,
      holderId: "me",
      random: () => 0.5,
    });
    const started = e.start();
    await clock.advance(0);
    // The acquire did not wait for the watch: sent, and found the lease held.
    assert.deepEqual(store.batches, [["x"]]);
    assert.equal(e.leader()?.holder, "other");
    // Released while the watch is not up yet: no notification reaches the elector.
    assert.ok(await store.release(held.lease));
    open();
    await started;
    await clock.advance(0);
    // Asked again as soon as the watch was up, not after retryMs.
    assert.ok(e.isLeader(), `batches: ${JSON.stringify(store.batches)}`);
    const stop = e.stop();
    await clock.advance(0);
    await stop;
  });

  it("an elector's trust window starts when its acquire batch was sent", async () => {
    const clock = new FakeClock();
    const store = new AcquireStore(clock);
    let open = () => {};
    store.gate = new Promise<void>((r) => {
      open = r;
    });
    const e = createElector({
      store,
      name: "w",
      ttlMs: 1000,
      clock,
      holderId: "me",
      random: () => 0.5,
    });
    await e.start();
    const sentAt = clock.now();
    await clock.advance(850); // the answer comes back 850 ms after the batch left
    // No renewal gets through from now on: the term lasts exactly its first trust window.
    store.renewMany = async () => {
      throw new StoreError("down", { transient: true, kind: "connection" });
    };
    store.gate = null;
    open();
    await clock.advance(0);
    assert.equal(e.isLeader(), true);
    // Nor a new campaign (the store's lease, granted late, outlives the window).
    store.failWith = new StoreError("down", { transient: true, kind: "connection" });
    // Trust window: sentAt + ttl − margin (100) = sentAt + 900.
    await clock.advance(sentAt + 899 - clock.now());
    assert.equal(e.isLeader(), true);
    await clock.advance(2);
    assert.equal(e.isLeader(), false);
    const stop = e.stop();
    await clock.advance(0);
    await stop;
  });
});
