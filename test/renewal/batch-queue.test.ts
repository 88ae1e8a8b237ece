import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StoreError } from "../../src/errors.js";
import { Acquirer, Releaser, Renewer } from "../../src/renewal/index.js";
import type {
  AcquireItem,
  AcquireResult,
  LeaseRef,
  RenewItem,
  RenewResult,
} from "../../src/store/types.js";
import { MemoryStore } from "../../src/stores/memory/index.js";
import { FakeClock } from "../../src/testing/index.js";

/** A memory store whose `*Many` calls answer one result too few. */
class ShortStore extends MemoryStore {
  override async acquireMany(items: readonly AcquireItem[]): Promise<AcquireResult[]> {
    return (await super.acquireMany(items)).slice(1);
  }
  override async releaseMany(leases: readonly LeaseRef[]): Promise<boolean[]> {
    return (await super.releaseMany(leases)).slice(1);
  }
  override async renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return (await super.renewMany(items)).slice(1);
  }
}

/** Checks `e` is the fatal StoreError of a `*Many` call that answered 1 result for 2 leases. */
function shortAnswer(what: string) {
  return (e: unknown) =>
    e instanceof StoreError &&
    !e.transient &&
    e.message === `${what} answered 1 results for 2 leases`;
}

/** Leases "a" and "b", held by "me". */
async function heldPair(store: MemoryStore): Promise<LeaseRef[]> {
  const out: LeaseRef[] = [];
  for (const n of ["a", "b"]) {
    const r = await store.acquire(n, "me", 1000);
    assert.ok(r.acquired);
    out.push(r.lease);
  }
  return out;
}

describe("batch queue: a *Many call that answers the wrong number of results", () => {
  it("fails each acquire of the batch", async () => {
    const clock = new FakeClock();
    const a = new Acquirer(new ShortStore({ clock }), clock);
    const rs = await Promise.allSettled([a.acquire("a", "me", 1000), a.acquire("b", "me", 1000)]);
    for (const r of rs) {
      assert.equal(r.status, "rejected");
      assert.ok(shortAnswer("tenure acquirer: acquireMany")(r.reason), String(r.reason));
    }
  });

  it("fails each release of the batch", async () => {
    const clock = new FakeClock();
    const store = new ShortStore({ clock });
    const leases = await heldPair(store);
    const rel = new Releaser(store, clock);
    const rs = await Promise.allSettled(leases.map((l) => rel.release(l)));
    for (const r of rs) {
      assert.equal(r.status, "rejected");
      assert.ok(shortAnswer("tenure releaser: releaseMany")(r.reason), String(r.reason));
    }
  });

  it("answers each renewal of the batch `failed`", async () => {
    const clock = new FakeClock();
    const store = new ShortStore({ clock });
    const leases = await heldPair(store);
    const renewer = new Renewer(store, clock);
    const all = leases.map((l) => renewer.join(l, 1000).next(clock.now(), clock.now() + 900));
    await clock.advance(0);
    for (const o of await Promise.all(all)) {
      assert.equal(o.kind, "failed");
      const error = (o as { error: unknown }).error;
      assert.ok(shortAnswer("tenure renewer: renewMany")(error), String(error));
    }
  });
});
