import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  createElector,
  createGroup,
  type Demotion,
  type Elector,
  StoreError,
} from "../../src/index.js";
import { renewerFor } from "../../src/renewal/index.js";
import type { RenewItem, RenewResult } from "../../src/store/types.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";
import { ScriptedStore } from "../helpers/stores.js";

const TTL = 1000; // margin 100 ⇒ trust window 900; renew every 333

/**
 * A memory store without notifications (only a renewal can tell a loss) that
 * records every renewMany round trip and can make the next ones throw or hang.
 */
class BatchStore extends MemoryStore {
  /** The lease names of each renewMany call. */
  batches: string[][] = [];
  renews = 0;
  mode: "ok" | "throw" | "hang" = "ok";
  constructor(clock: FakeClock) {
    super({ clock });
    (this as { notifies: boolean }).notifies = false;
  }
  override async renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    this.batches.push(items.map((i) => i.lease.name));
    if (this.mode === "throw")
      throw new StoreError("scripted batch failure", {
        transient: true,
        kind: "connection",
        code: "ECONNRESET",
      });
    if (this.mode === "hang") return new Promise(() => {});
    return super.renewMany(items);
  }
  override async renew(...a: Parameters<MemoryStore["renew"]>): Promise<RenewResult> {
    this.renews += 1;
    return super.renew(...a);
  }
}

function setup<S extends MemoryStore | ScriptedStore>(mkStore: (clock: FakeClock) => S) {
  const clock = new FakeClock();
  const store = mkStore(clock);
  const electors: Elector[] = [];
  const demoted: (Demotion & { at: number })[] = [];
  const make = (name: string) => {
    const e = createElector({
      store,
      name,
      ttlMs: TTL,
      clock,
      holderId: "me",
      random: () => 0.5,
    });
    e.on("demoted", (d) => demoted.push({ ...d, at: clock.now() }));
    electors.push(e);
    return e;
  };
  /** Starts `n` electors (leases l0…) at the current time and lets them win. */
  const startMany = async (n: number, prefix = "l") => {
    const es = Array.from({ length: n }, (_, i) => make(`${prefix}${i}`));
    await Promise.all(es.map((e) => e.start()));
    await clock.advance(0);
    for (const e of es) assert.equal(e.isLeader(), true);
    return es;
  };
  const stopAll = async () => {
    const p = Promise.all(electors.map((e) => e.stop()));
    await clock.advance(0);
    await p;
  };
  return { clock, store, make, startMany, demoted, stopAll };
}

describe("electors on the shared renewer", () => {
  it("many electors due in the same slot renew in one renewMany round trip per interval", async () => {
    const { clock, store, startMany, demoted, stopAll } = setup((c) => new BatchStore(c));
    const es = await startMany(200);
    const t0 = clock.now();
    assert.equal(clock.pending(), 1, "one timer for 200 leaders");
    await clock.advance(332);
    assert.equal(store.batches.length, 0);
    await clock.advance(1);
    assert.deepEqual(
      store.batches.map((b) => b.length),
      [200],
    );
    await clock.advance(3 * 333);
    assert.deepEqual(
      store.batches.map((b) => b.length),
      [200, 200, 200, 200],
    );
    assert.equal(store.renews, 0);
    // each trust window starts at its batch's send time
    assert.equal(es[7]!.health().validForMs, t0 + 4 * 333 + TTL - 100 - clock.now());
    assert.equal(demoted.length, 0);
    await stopAll();
  });

  it("batches split at the renewer's batch size", async () => {
    const { clock, store, startMany, stopAll } = setup((c) => new BatchStore(c));
    renewerFor(store, { clock, batchSize: 4 });
    await startMany(10);
    await clock.advance(333);
    assert.deepEqual(
      store.batches.map((b) => b.length),
      [4, 4, 2],
    );
    await stopAll();
  });

  it("electors elected at different times settle into one batch; a lone elector keeps its exact interval", async () => {
    const { clock, store, make, stopAll } = setup((c) => new BatchStore(c));
    const t0 = clock.now();
    const a = make("a");
    await a.start();
    await clock.advance(100);
    const b = make("b");
    await b.start();
    await clock.advance(0);
    assert.equal(b.isLeader(), true);
    await clock.advance(233); // t0 + 333: a is due; b (due at 433) goes with it
    assert.deepEqual(store.batches, [["a", "b"]]);
    await clock.advance(333);
    assert.deepEqual(store.batches, [
      ["a", "b"],
      ["a", "b"],
    ]);
    assert.equal(clock.now(), t0 + 666);
    await stopAll();
  });

  it("a lease lost in a batch demotes only its own elector", async () => {
    const { clock, store, startMany, demoted, stopAll } = setup((c) => new BatchStore(c));
    const es = await startMany(5);
    const t0 = clock.now();
    const lostToken = es[2]!.term()!.token;
    await store.forceRelease("l2");
    assert.ok((await store.acquire("l2", "other", 60_000)).acquired);
    await clock.advance(333);
    assert.equal(store.batches.length, 1);
    assert.deepEqual(
      demoted.map((d) => [d.name, d.reason, d.token, d.at]),
      [["l2", "lost", lostToken, t0 + 333]],
    );
    assert.equal(es[2]!.leader()?.holder, "other");
    await clock.advance(2000);
    for (const i of [0, 1, 3, 4]) assert.equal(es[i]!.isLeader(), true);
    assert.equal(demoted.length, 1);
    assert.ok(
      store.batches.slice(1).every((b) => !b.includes("l2")),
      "the lost lease is never sent again",
    );
    await stopAll();
  });

  it("a batch that throws: each elector retries within its own trust window and keeps its term", async () => {
    const { clock, store, make, demoted, stopAll } = setup((c) => new BatchStore(c));
    const a = make("a");
    await a.start();
    await clock.advance(300);
    const b = make("b"); // due at 633: too late to go with a's slot at 333
    await b.start();
    await clock.advance(0);
    const ta = a.term()!;
    const tb = b.term()!;
    const errors: string[] = [];
    a.on("error", (e) => errors.push(`a:${e.message}`));
    b.on("error", (e) => errors.push(`b:${e.message}`));
    store.mode = "throw";
    await clock.advance(33); // a's renewal fails
    assert.deepEqual(store.batches, [["a"]]);
    assert.deepEqual(errors, ["a:scripted batch failure"]);
    await clock.advance(400); // a retries with backoff; b's renewal fails too
    assert.ok(store.batches.length >= 3, JSON.stringify(store.batches));
    assert.ok(errors.includes("b:scripted batch failure"));
    store.mode = "ok";
    await clock.advance(300);
    assert.equal(a.term(), ta);
    assert.equal(b.term(), tb);
    assert.equal(demoted.length, 0);
    await stopAll();
  });

  it("a batch that keeps failing demotes each elector exactly at its own deadline", async () => {
    for (const mode of ["throw", "hang"] as const) {
      const { clock, store, make, demoted, stopAll } = setup((c) => new BatchStore(c));
      const t0 = clock.now();
      const a = make("a");
      await a.start();
      await clock.advance(100);
      const b = make("b");
      await b.start();
      await clock.advance(0);
      store.mode = mode;
      await clock.advance(2000);
      assert.deepEqual(
        demoted.slice(0, 2).map((d) => [d.name, d.reason, d.at]),
        [
          ["a", "expired", t0 + TTL - 100],
          ["b", "expired", t0 + 100 + TTL - 100],
        ],
        mode,
      );
      if (mode === "hang") assert.deepEqual(store.batches[0], ["a", "b"], "both in one batch");
      store.mode = "ok";
      await stopAll();
    }
  });

  it("stop() mid-batch: the stopped elector ends at once and is never sent again; the others carry on", async () => {
    const { clock, store, startMany, demoted, stopAll } = setup((c) => new BatchStore(c));
    const [a, b] = await startMany(2);
    const t0 = clock.now();
    store.mode = "hang";
    await clock.advance(333);
    assert.deepEqual(store.batches, [["l0", "l1"]]);
    const p = a!.stop();
    await clock.advance(0);
    await p;
    assert.deepEqual(
      demoted.map((d) => [d.name, d.reason, d.at]),
      [["l0", "stopped", t0 + 333]],
    );
    assert.equal(await store.read("l0"), null, "released");
    store.mode = "ok";
    await clock.advance(1000); // b's hung request ends at its deadline; b campaigns again
    assert.ok(store.batches.slice(1).every((x) => !x.includes("l0")));
    await clock.advance(1000);
    assert.equal(b!.isLeader(), true);
    await stopAll();
    const renewer = renewerFor(store, { clock });
    assert.equal(renewer.waiting, 0);
    assert.equal(renewer.armed, false, "an empty renewer holds no timer");
    assert.equal(clock.pending(), 0, "nothing left scheduled");
  });

  it("without renewMany the electors renew one call per lease, all at once", async () => {
    const { clock, store, startMany, demoted, stopAll } = setup(
      (c) => new ScriptedStore(new MemoryStore({ clock: c }), { quiet: true }),
    );
    await startMany(20);
    const before = store.calls.renew;
    await clock.advance(333);
    assert.equal(store.calls.renew - before, 20);
    store.fail("renew", "transient", 5);
    await clock.advance(333);
    await clock.advance(300);
    assert.equal(demoted.length, 0, "five failed calls, retried by their own electors");
    await stopAll();
  });

  it("group partitions and the member lease renew through the same renewer", async () => {
    const clock = new FakeClock();
    const store = new BatchStore(clock);
    const g = createGroup({
      store,
      name: "tenants",
      partitions: 16,
      ttlMs: TTL,
      clock,
      holderId: "m1",
      random: () => 0.5,
    });
    await g.start();
    await clock.advanceUntil(() => g.owned().length === 16, 10_000);
    const n = store.batches.length;
    await clock.advance(3 * 333 + 1);
    const after = store.batches.slice(n);
    assert.ok(after.length <= 4, JSON.stringify(after.map((b) => b.length)));
    assert.ok(
      after.some((b) => b.length === 17),
      "16 partitions and the member in one batch",
    );
    assert.equal(store.renews, 0);
    const p = g.stop();
    await clock.advance(0);
    await p;
  });
});
