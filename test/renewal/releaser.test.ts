import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createGroup, isConfigError, StoreError } from "../../src/index.js";
import { MAX_RELEASES_IN_FLIGHT, Releaser, releaserFor } from "../../src/renewal/index.js";
import type { LeaseRef, LeaseStore } from "../../src/store/types.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";

/** A memory store that records each releaseMany round trip (and each lone release) and can script its answers. */
class ReleaseStore extends MemoryStore {
  /** The lease names of each releaseMany call. */
  batches: string[][] = [];
  singles: string[] = [];
  /** Set: the next releaseMany calls wait for this promise before answering. */
  gate: Promise<void> | null = null;
  /** Set: the next releaseMany calls throw it. */
  failWith: Error | null = null;
  /** A name whose record the store "cannot read": a batch holding it, or its release, throws a schema error. */
  bad: string | null = null;
  /** Called with each lease name when the store releases it. */
  onRelease: (name: string) => void = () => {};
  constructor(clock: FakeClock) {
    super({ clock });
  }
  override async releaseMany(leases: readonly LeaseRef[]): Promise<boolean[]> {
    this.batches.push(leases.map((l) => l.name));
    if (this.gate) await this.gate;
    if (this.failWith) throw this.failWith;
    if (this.bad && leases.some((l) => l.name === this.bad)) throw this.schema();
    for (const l of leases) this.onRelease(l.name);
    return super.releaseMany(leases);
  }
  override async release(lease: LeaseRef): Promise<boolean> {
    this.singles.push(lease.name);
    if (lease.name === this.bad) throw this.schema();
    this.onRelease(lease.name);
    return super.release(lease);
  }
  private schema(): StoreError {
    return new StoreError("not a lease", { transient: false, kind: "schema" });
  }
}

async function held(store: LeaseStore, names: string[], holder = "me"): Promise<LeaseRef[]> {
  const out: LeaseRef[] = [];
  for (const n of names) {
    const r = await store.acquire(n, holder, 60_000);
    assert.ok(r.acquired);
    out.push(r.lease);
  }
  return out;
}

const names = (n: number, p = "l") => Array.from({ length: n }, (_, i) => `${p}${i}`);

describe("releaser", () => {
  it("releases issued in one turn go as batches of at most batchSize, each its own answer", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const leases = await held(store, names(10));
    const r = new Releaser(store, clock, { batchSize: 4 });
    const stale = { ...leases[3]!, token: leases[3]!.token + 1n };
    const answers = await Promise.all(leases.map((l, i) => r.release(i === 3 ? stale : l)));
    assert.deepEqual(
      store.batches.map((b) => b.length),
      [4, 4, 2],
    );
    assert.deepEqual(store.singles, []);
    assert.deepEqual(
      answers,
      leases.map((_, i) => i !== 3),
    );
    assert.equal((await store.read("l3"))?.token, leases[3]!.token);
    assert.equal(await store.read("l0"), null);
    assert.deepEqual(r.stats(), { batches: 3, sent: 10, fallbacks: 0, dropped: 0 });
  });

  it("a lone release is a plain release; a later turn is a later batch", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const [a, b, c] = await held(store, ["a", "b", "c"]);
    const r = new Releaser(store, clock);
    assert.equal(await r.release(a!), true);
    assert.deepEqual(store.singles, ["a"]);
    assert.deepEqual(store.batches, []);
    await Promise.all([r.release(b!), r.release(c!)]);
    assert.deepEqual(store.batches, [["b", "c"]]);
  });

  it(`at most ${MAX_RELEASES_IN_FLIGHT} batches are out: releases of later turns wait and leave together`, async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const leases = await held(store, names(MAX_RELEASES_IN_FLIGHT * 2 + 5));
    const r = new Releaser(store, clock);
    let open = () => {};
    store.gate = new Promise<void>((res) => {
      open = res;
    });
    const all: Promise<boolean>[] = [];
    // Each turn its own pair: the first MAX_RELEASES_IN_FLIGHT go out, the rest wait.
    for (let i = 0; i < MAX_RELEASES_IN_FLIGHT * 2; i += 2) {
      all.push(r.release(leases[i]!), r.release(leases[i + 1]!));
      await Promise.resolve();
      await Promise.resolve();
    }
    for (const l of leases.slice(MAX_RELEASES_IN_FLIGHT * 2)) {
      all.push(r.release(l));
      await Promise.resolve();
    }
    assert.equal(store.batches.length, MAX_RELEASES_IN_FLIGHT);
    store.gate = null;
    open();
    assert.ok((await Promise.all(all)).every((x) => x));
    // Everything that waited left together, in one more batch.
    assert.equal(store.batches.length, MAX_RELEASES_IN_FLIGHT + 1);
    assert.equal(store.batches.at(-1)!.length, 5);
  });

  it("a request still queued when its caller stopped waiting is not sent", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const leases = await held(store, [...names(MAX_RELEASES_IN_FLIGHT * 2), "stale", "live"]);
    const r = new Releaser(store, clock);
    let open = () => {};
    store.gate = new Promise<void>((res) => {
      open = res;
    });
    const first: Promise<boolean>[] = [];
    for (let i = 0; i < MAX_RELEASES_IN_FLIGHT; i++) {
      // MAX_RELEASES_IN_FLIGHT batches out
      first.push(r.release(leases[2 * i]!), r.release(leases[2 * i + 1]!));
      await new Promise((res) => setImmediate(res));
    }
    const stale = r.release(leases.at(-2)!, clock.now() + 100);
    const live = r.release(leases.at(-1)!, clock.now() + 10_000);
    stale.catch(() => {});
    await clock.advance(100);
    store.gate = null;
    open();
    await Promise.all(first);
    await assert.rejects(stale, (e: StoreError) => e.kind === "timeout" && e.transient);
    assert.equal(await live, true);
    assert.ok(!store.batches.flat().includes("stale") && !store.singles.includes("stale"));
    assert.equal(r.stats().dropped, 1);
    assert.equal((await store.read("stale"))?.holder, "me");
  });

  it("a batch that never comes back stops holding the others once its callers' deadline has passed", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const leases = await held(store, [...names(MAX_RELEASES_IN_FLIGHT * 2), "next"]);
    const r = new Releaser(store, clock);
    store.gate = new Promise<void>(() => {}); // never answers
    for (let i = 0; i < MAX_RELEASES_IN_FLIGHT; i++) {
      void r.release(leases[2 * i]!, clock.now() + 100);
      void r.release(leases[2 * i + 1]!, clock.now() + 100);
      await new Promise((res) => setImmediate(res));
    }
    const next = r.release(leases.at(-1)!, clock.now() + 10_000);
    await Promise.resolve();
    assert.equal(store.batches.length, MAX_RELEASES_IN_FLIGHT);
    store.gate = null;
    await clock.advance(100);
    assert.equal(await next, true);
    assert.deepEqual(store.singles, ["next"]);
  });

  it("without releaseMany: release per lease", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const leases = await held(store, names(3));
    const bare = { release: (l: LeaseRef) => store.release(l) };
    const r = new Releaser(bare, clock);
    assert.deepEqual(await Promise.all(leases.map((l) => r.release(l))), [true, true, true]);
    assert.deepEqual(store.singles, ["l0", "l1", "l2"]);
  });

  it("a batch that fails as a whole fails each request with the store's error", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const leases = await held(store, names(3));
    const r = new Releaser(store, clock);
    const boom = new StoreError("down", { transient: true, kind: "connection" });
    store.failWith = boom;
    const res = await Promise.allSettled(leases.map((l) => r.release(l)));
    assert.ok(res.every((x) => x.status === "rejected" && x.reason === boom));
    assert.deepEqual(store.singles, []);
  });

  it("a batch refused for one unreadable record or a bad item: each item alone, only that one fails", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const leases = await held(store, names(3));
    store.bad = "l1";
    const r = new Releaser(store, clock);
    const res = await Promise.allSettled(leases.map((l) => r.release(l)));
    assert.deepEqual(
      res.map((x) => x.status),
      ["fulfilled", "rejected", "fulfilled"],
    );
    assert.deepEqual(store.singles, ["l0", "l1", "l2"]);
    assert.equal(r.stats().fallbacks, 1);
    // A bad item (a ConfigError from releaseMany) takes the same path.
    store.bad = null;
    const more = await held(store, ["m0", "m1"]);
    const bad = { ...more[1]!, name: "" };
    const res2 = await Promise.allSettled([r.release(more[0]!), r.release(bad)]);
    assert.equal(res2[0]!.status, "fulfilled");
    assert.ok(res2[1]!.status === "rejected" && isConfigError(res2[1]!.reason));
  });

  it("batchSize is checked; releaserFor shares one releaser per store and clock", () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    assert.throws(() => new Releaser(store, clock, { batchSize: 0 }), isConfigError);
    const a = releaserFor(store, { clock });
    assert.equal(releaserFor(store, { clock }), a);
    assert.notEqual(releaserFor(store, { clock: new FakeClock() }), a);
  });
});

describe("group stop() through the releaser", () => {
  it("hands every partition over in one releaseMany, each partition's work stopped first", async () => {
    const clock = new FakeClock();
    const store = new ReleaseStore(clock);
    const P = 16;
    const g = createGroup({
      store,
      name: "rel",
      partitions: P,
      ttlMs: 1000,
      clock,
      holderId: "a",
      random: () => 0.5,
    });
    const order: string[] = [];
    store.onRelease = (n) => order.push(`release ${n}`);
    g.service({
      name: "work",
      start: () => {},
      stop: () => {
        order.push("stop work");
      },
    });
    await g.start();
    for (let i = 0; i < 200 && g.owned().length < P; i++) await clock.advance(5);
    assert.equal(g.owned().length, P);
    order.length = 0;
    store.batches = [];
    store.singles = [];
    const stopped = g.stop();
    for (let i = 0; i < 100; i++) await clock.advance(1);
    await stopped;
    // The member lease has no work to stop: it leaves first, so the others start taking over
    // while the partitions' work stops; then every partition in one round trip.
    assert.equal(store.singles.length, 1);
    assert.match(store.singles[0]!, /^rel\/members\//);
    assert.equal(store.batches.length, 1, `batches: ${JSON.stringify(store.batches)}`);
    assert.deepEqual(
      [...store.batches[0]!].sort(),
      Array.from({ length: P }, (_, p) => `rel/p/${p}`).sort(),
    );
    // Every partition's work stopped before any of its leases was released.
    assert.equal(order.filter((o) => o === "stop work").length, P);
    const firstRelease = order.findIndex((o) => o.startsWith("release "));
    assert.ok(
      order.slice(firstRelease).every((o) => o.startsWith("release ")),
      order.join(", "),
    );
    assert.deepEqual(await store.list(), []);
  });
});
