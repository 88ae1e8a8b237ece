import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isConfigError, StoreError } from "../../src/errors.js";
import { Renewer, type RenewOutcome, renewerFor } from "../../src/renewal/index.js";
import type { LeaseRef, LeaseStore, RenewItem, RenewResult } from "../../src/store/types.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";

/** A memory store that counts round trips and can fail or hang the next renewMany calls. */
class BatchStore extends MemoryStore {
  batches: number[] = [];
  renews = 0;
  mode: "ok" | "throw" | "hang" = "ok";
  override async renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    this.batches.push(items.length);
    if (this.mode === "throw")
      throw new StoreError("scripted batch failure", { transient: true, kind: "connection" });
    if (this.mode === "hang") return new Promise(() => {});
    return super.renewMany(items);
  }
  override async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    this.renews += 1;
    return super.renew(lease, ttlMs);
  }
}

/** The same store without renewMany: the renewer falls back to renew per lease. */
function withoutRenewMany(store: MemoryStore): LeaseStore & { renews: number } {
  const s = {
    kind: store.kind,
    notifies: false,
    renews: 0,
    hang: new Set<string>(),
    acquire: store.acquire.bind(store),
    renew(lease: LeaseRef, ttlMs: number) {
      s.renews += 1;
      if (s.hang.has(lease.name)) return new Promise<RenewResult>(() => {});
      return store.renew(lease, ttlMs);
    },
    release: store.release.bind(store),
    read: store.read.bind(store),
    list: store.list.bind(store),
    forceRelease: store.forceRelease.bind(store),
    putFenced: store.putFenced.bind(store),
    getFenced: store.getFenced.bind(store),
    close: store.close.bind(store),
  };
  return s;
}

async function hold(store: LeaseStore, n: number, ttlMs = 1000): Promise<LeaseRef[]> {
  const out: LeaseRef[] = [];
  for (let i = 0; i < n; i++) {
    const r = await store.acquire(`l${i}`, "me", ttlMs);
    assert.ok(r.acquired);
    out.push(r.lease);
  }
  return out;
}

describe("renewer", () => {
  it("requests due in the same slot go out as one renewMany round trip, each with its own result", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const leases = await hold(store, 50);
    const renewer = new Renewer(store, clock);
    const rs = leases.map((l) => renewer.join(l, 1000));
    const t0 = clock.now();
    const outs: RenewOutcome[] = [];
    for (const r of rs) void r.next(t0 + 300, t0 + 900).then((o) => outs.push(o));
    assert.equal(clock.pending(), 1, "one timer for all of them");
    await clock.advance(299);
    assert.deepEqual(store.batches, []);
    await clock.advance(1);
    assert.deepEqual(store.batches, [50]);
    assert.equal(store.renews, 0);
    assert.equal(outs.length, 50);
    for (const o of outs) assert.deepEqual(o, { kind: "renewed", sentAt: t0 + 300 });
    assert.equal(clock.pending(), 0, "an empty renewer holds no timer");
    assert.equal(renewer.armed, false);
  });

  it("splits what is due at the batch size", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const leases = await hold(store, 25);
    const renewer = new Renewer(store, clock, { batchSize: 10 });
    const t0 = clock.now();
    const all = leases.map((l) => renewer.join(l, 1000).next(t0 + 100, t0 + 900));
    await clock.advance(100);
    assert.deepEqual(store.batches, [10, 10, 5]);
    assert.ok((await Promise.all(all)).every((o) => o.kind === "renewed"));
    assert.throws(() => new Renewer(store, clock, { batchSize: 0 }), isConfigError);
    assert.throws(() => renewer.configure({ batchSize: 1.5 }), isConfigError);
  });

  it("a single request keeps its exact time; a later one may join an earlier slot, never the other way", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const [a, b, c] = await hold(store, 3);
    const renewer = new Renewer(store, clock);
    const t0 = clock.now();
    const ra = renewer.join(a!, 1000).next(t0 + 333, t0 + 900, 150);
    const rb = renewer.join(b!, 1000).next(t0 + 400, t0 + 900, 150); // may go from 250 on
    const rc = renewer.join(c!, 1000).next(t0 + 500, t0 + 900, 150); // may go from 350 on: not with a
    await clock.advance(333);
    assert.deepEqual(store.batches, [2]);
    assert.deepEqual(await ra, { kind: "renewed", sentAt: t0 + 333 });
    assert.deepEqual(await rb, { kind: "renewed", sentAt: t0 + 333 });
    await clock.advance(166);
    assert.deepEqual(store.batches, [2]);
    await clock.advance(1);
    assert.deepEqual(store.batches, [2, 1]);
    assert.deepEqual(await rc, { kind: "renewed", sentAt: t0 + 500 });
  });

  it("a lease lost in a batch is answered `lost` alone; the others are renewed", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const leases = await hold(store, 5);
    await store.forceRelease("l2");
    assert.ok((await store.acquire("l2", "other", 5000)).acquired);
    const renewer = new Renewer(store, clock);
    const t0 = clock.now();
    const all = leases.map((l) => renewer.join(l, 1000).next(t0 + 10, t0 + 900));
    await clock.advance(10);
    const outs = await Promise.all(all);
    assert.deepEqual(store.batches, [5]);
    assert.deepEqual(
      outs.map((o) => o.kind),
      ["renewed", "renewed", "lost", "renewed", "renewed"],
    );
    const lost = outs[2] as Extract<RenewOutcome, { kind: "lost" }>;
    assert.equal(lost.current?.holder, "other");
    assert.equal(lost.sentAt, t0 + 10);
  });

  it("a batch that throws is each request's own failure, with the batch's send time", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const leases = await hold(store, 3);
    store.mode = "throw";
    const renewer = new Renewer(store, clock);
    const t0 = clock.now();
    const all = leases.map((l) => renewer.join(l, 1000).next(t0 + 10, t0 + 900));
    await clock.advance(10);
    for (const o of await Promise.all(all)) {
      assert.equal(o.kind, "failed");
      assert.equal((o as { sentAt: number }).sentAt, t0 + 10);
      assert.match(String((o as { error: unknown }).error), /scripted batch failure/);
    }
  });

  it("a hanging batch answers each request `timeout` at its own deadline, with one timer per batch", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const leases = await hold(store, 3);
    store.mode = "hang";
    const renewer = new Renewer(store, clock);
    const t0 = clock.now();
    const at: Record<number, number> = {};
    leases.forEach((l, i) => {
      void renewer
        .join(l, 1000)
        .next(t0 + 10, t0 + 500 + 100 * i, 0)
        .then((o) => {
          assert.equal(o.kind, "timeout");
          at[i] = clock.now();
        });
    });
    await clock.advance(10);
    assert.deepEqual(store.batches, [3]);
    assert.equal(clock.pending(), 1, "one deadline timer for the batch in flight");
    await clock.advance(1000);
    assert.deepEqual(at, { 0: t0 + 500, 1: t0 + 600, 2: t0 + 700 });
    assert.equal(clock.pending(), 0);
  });

  it("a request whose deadline comes before it is sent is answered `expired` and not sent", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const [a] = await hold(store, 1);
    const renewer = new Renewer(store, clock);
    const t0 = clock.now();
    const p = renewer.join(a!, 1000).next(t0 + 2000, t0 + 900);
    await clock.advance(900);
    assert.deepEqual(await p, { kind: "expired" });
    assert.deepEqual(store.batches, []);
    // a stalled event loop: due and past the deadline when the timer finally fires
    const q = renewer.join(a!, 1000).next(clock.now() + 100, clock.now() + 500);
    await clock.jump(1000);
    assert.deepEqual(await q, { kind: "expired" });
    assert.deepEqual(store.batches, []);
  });

  it("a client that leaves is never sent afterwards; one leaving mid-batch is answered at once", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const [a, b] = await hold(store, 2);
    const renewer = new Renewer(store, clock);
    const t0 = clock.now();
    const ac = new AbortController();
    const ra = renewer.join(a!, 1000, ac.signal);
    const pa = ra.next(t0 + 100, t0 + 900);
    assert.equal(renewer.armed, true);
    ac.abort();
    assert.deepEqual(await pa, { kind: "left" });
    assert.equal(renewer.waiting, 0);
    assert.equal(renewer.armed, false, "an empty renewer holds no timer");
    await clock.advance(1000);
    assert.deepEqual(store.batches, []);
    assert.deepEqual(await ra.next(clock.now(), clock.now() + 900), { kind: "left" });
    // mid-batch
    store.mode = "hang";
    const rb = renewer.join(b!, 1000);
    const pb = rb.next(clock.now() + 10, clock.now() + 900);
    await clock.advance(10);
    assert.deepEqual(store.batches, [1]);
    rb.leave();
    assert.deepEqual(await pb, { kind: "left" });
    assert.equal(clock.pending(), 0, "the batch's deadline timer went with its last request");
  });

  it("without renewMany: one renew per lease, all at once, each judged and timed alone", async () => {
    const clock = new FakeClock();
    const mem = new MemoryStore({ clock });
    const store = withoutRenewMany(mem);
    const leases = await hold(store, 4);
    await mem.forceRelease("l1");
    (store as unknown as { hang: Set<string> }).hang.add("l3");
    const renewer = new Renewer(store, clock);
    const t0 = clock.now();
    const outs: (RenewOutcome & { at: number })[] = [];
    leases.forEach((l, i) => {
      void renewer
        .join(l, 1000)
        .next(t0 + 10, t0 + 900)
        .then((o) => (outs[i] = { ...o, at: clock.now() }));
    });
    await clock.advance(10);
    assert.equal(store.renews, 4);
    assert.deepEqual(
      outs.slice(0, 3).map((o) => o.kind),
      ["renewed", "lost", "renewed"],
    );
    assert.equal(outs[3], undefined, "the hanging one is still in flight");
    await clock.advance(890);
    const hung = outs[3] as (RenewOutcome & { at: number }) | undefined;
    assert.equal(hung?.kind, "timeout");
    assert.equal(hung?.at, t0 + 900);
  });

  it("renewerFor: one per (store, clock); another clock gets another", () => {
    const c1 = new FakeClock();
    const c2 = new FakeClock();
    const store = new MemoryStore({ clock: c1 });
    const r1 = renewerFor(store, { clock: c1 });
    assert.equal(renewerFor(store, { clock: c1 }), r1);
    assert.notEqual(renewerFor(store, { clock: c2 }), r1);
    assert.notEqual(renewerFor(new MemoryStore({ clock: c1 }), { clock: c1 }), r1);
    assert.equal(renewerFor(store, { clock: c1, batchSize: 7 }).batchSize, 7);
  });
});

describe("memory store renewMany", () => {
  it("judges each item alone, as renew would", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore({ clock });
    const [a, b] = await hold(store, 2, 1000);
    await store.release(b!);
    const res = await store.renewMany([
      { lease: a!, ttlMs: 5000 },
      { lease: b!, ttlMs: 5000 },
      { lease: { ...a!, token: a!.token + 1n }, ttlMs: 5000 },
    ]);
    assert.deepEqual(
      res.map((r) => r.renewed),
      [true, false, false],
    );
    assert.equal((await store.read("l0"))?.expiresInMs, 5000);
    assert.deepEqual(await store.renewMany([]), []);
  });
});

describe("renewer: clients that take outcomes by a method call (Renewal.ask)", () => {
  it("outcomes come later, in one microtask for a whole batch, never from inside the renewer; `left` too", async () => {
    const clock = new FakeClock();
    const store = new BatchStore({ clock });
    const leases = await hold(store, 3);
    const renewer = new Renewer(store, clock);
    const rs = leases.map((l) => renewer.join(l, 1000));
    const t0 = clock.now();
    const got: Array<[number, RenewOutcome]> = [];
    const client = {
      onRenewal(r: (typeof rs)[number], o: RenewOutcome) {
        got.push([rs.indexOf(r), o]);
      },
    };
    for (const r of rs) r.ask(t0 + 300, t0 + 900, 0, client);
    assert.throws(() => rs[0]!.ask(t0 + 300, t0 + 900, 0, client), /one renewal request at a time/);
    assert.equal(clock.pending(), 1, "one timer for all of them");
    await clock.advance(300);
    assert.deepEqual(store.batches, [3]);
    assert.deepEqual(
      got.map(([i, o]) => [i, o.kind]),
      [
        [0, "renewed"],
        [1, "renewed"],
        [2, "renewed"],
      ],
    );
    // Asked again, then leaving: `left` is handed over too, after leave() returned.
    rs[1]!.ask(t0 + 600, t0 + 1200, 0, client);
    got.length = 0;
    rs[1]!.leave();
    assert.deepEqual(got, [], "not from inside leave()");
    await Promise.resolve();
    assert.deepEqual(got, [[1, { kind: "left" }]]);
    // A client that left asks again: `left` at once (later), nothing scheduled.
    got.length = 0;
    rs[1]!.ask(t0 + 900, t0 + 1500, 0, client);
    await Promise.resolve();
    assert.deepEqual(got, [[1, { kind: "left" }]]);
    assert.equal(renewer.waiting, 0);
  });
});
