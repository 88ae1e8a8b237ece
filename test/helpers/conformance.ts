import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isStoreError } from "../../src/errors.js";
import type { LeaseEvent, LeaseRef, LeaseStore, RenewItem } from "../../src/store/types.js";
import { FaultProxy } from "./fault-proxy.js";
import { uniqueName, waitFor } from "./wait.js";

export interface ConformanceOptions {
  /**
   * Kills this store's server-side connection(s) (pg_terminate_backend, CLIENT
   * KILL, …) between two calls; resolves to how many it killed.
   */
  killConnection?: (store: LeaseStore) => Promise<number>;
  /**
   * Reaching the server through a fault proxy (test/helpers/fault-proxy.ts),
   * for the kill while a renewal is in flight: `open(port)` opens a store that
   * connects to 127.0.0.1:`port` (the proxy) instead of `target`.
   * `inFlight`: what the killed renewal does — `transient` (rejects with a
   * transient StoreError) or `resent` (the driver resends it on a new
   * connection and it succeeds).
   */
  proxied?: {
    readonly target: { readonly host: string; readonly port: number };
    readonly open: (port: number) => Promise<LeaseStore>;
    readonly inFlight: "transient" | "resent";
  };
  /** Restarts the server (tokens must keep increasing afterwards). */
  restartServer?: () => Promise<void>;
  /** Skip the whole suite with this message (service missing). */
  skip?: string;
  /** Number of concurrent acquirers (separate connections). Default 8. */
  concurrency?: number;
  /**
   * A store whose requests to the server are counted (a wrapped client or
   * driver: see each store's test file for what exactly is counted), for
   * "renewMany of 1 000 items is one round trip". `perBatch`: the requests one
   * batch sends, all at once (1, or 2 on etcd: a read and a keep-alive).
   */
  counted?: {
    readonly open: () => Promise<{ store: LeaseStore; requests: () => number }>;
    readonly perBatch: number;
    /**
     * Requests one `acquireMany` of 1 000 free leases sends, all at once.
     * Default `perBatch` (etcd: ten transactions of 100 items under
     * `--max-txn-ops`, and one keep-alive).
     */
    readonly perAcquireBatch?: number;
    /** Requests one `releaseMany` of 1 000 held leases sends, all at once. Default 1. */
    readonly perReleaseBatch?: number;
  };
  /**
   * A store whose next calls can be made to hang until they time out (when
   * the store is not reached through `proxied`, whose black hole does that):
   * `stall()` starts it, `heal()` ends it.
   */
  stallable?: () => Promise<{
    store: LeaseStore;
    stall: () => Promise<void>;
    heal: () => Promise<void>;
    close: () => Promise<void>;
  }>;
}

/** `renewMany` items of these terms, each with `ttlMs`. */
const itemsOf = (leases: readonly LeaseRef[], ttlMs: number): RenewItem[] =>
  leases.map((lease) => ({ lease, ttlMs }));

/** Acquires `n` leases named `<prefix>-<i>` for `holder` (a few at a time); their terms in order. */
async function acquireMany(
  store: LeaseStore,
  prefix: string,
  n: number,
  holder: string,
  ttlMs: number,
): Promise<LeaseRef[]> {
  const out: LeaseRef[] = [];
  for (let i = 0; i < n; i += 50) {
    const rs = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, (_, j) =>
        store.acquire(`${prefix}-${i + j}`, holder, ttlMs),
      ),
    );
    for (const r of rs) {
      assert.ok(
        r.acquired,
        `acquire: ${JSON.stringify(r, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`,
      );
      out.push(r.lease);
    }
  }
  return out;
}

/**
 * The one conformance suite every backend passes: `open()` must return a new
 * store instance with its own connection(s) each time it is called.
 */
export function describeLeaseStore(
  name: string,
  open: () => Promise<LeaseStore>,
  opts: ConformanceOptions = {},
): void {
  describe(`LeaseStore conformance: ${name}`, { skip: opts.skip ?? false }, () => {
    const opened: LeaseStore[] = [];
    const fresh = async () => {
      const s = await open();
      opened.push(s);
      return s;
    };
    let store: LeaseStore;
    before(async () => {
      store = await fresh();
    });
    after(async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
    });

    it("acquire on a free lease starts a term with a positive token; read reports it", async () => {
      const n = uniqueName("free");
      const r = await store.acquire(n, "a", 5000);
      assert.equal(r.acquired, true);
      if (!r.acquired) return;
      assert.equal(r.lease.name, n);
      assert.equal(r.lease.holder, "a");
      assert.ok(r.lease.token > 0n);
      const info = await store.read(n);
      assert.ok(info);
      assert.equal(info.holder, "a");
      assert.equal(info.token, r.lease.token);
      assert.ok(
        info.expiresInMs > 3000 && info.expiresInMs <= 5000,
        `expiresInMs ${info.expiresInMs}`,
      );
    });

    it("a held lease cannot be acquired by another holder; the loser learns who holds it", async () => {
      const n = uniqueName("held");
      const a = await store.acquire(n, "a", 5000);
      assert.equal(a.acquired, true);
      const b = await store.acquire(n, "b", 5000);
      assert.equal(b.acquired, false);
      if (b.acquired) return;
      assert.equal(b.current?.holder, "a");
      assert.ok((b.current?.expiresInMs ?? 0) > 0);
    });

    it(`N concurrent acquirers from separate connections: exactly one wins`, async () => {
      const n = uniqueName("race");
      const count = opts.concurrency ?? 8;
      const stores = await Promise.all(Array.from({ length: count }, () => fresh()));
      for (let round = 0; round < 3; round++) {
        const name = `${n}-${round}`;
        const results = await Promise.all(stores.map((s, i) => s.acquire(name, `h${i}`, 5000)));
        const winners = results.filter((r) => r.acquired);
        assert.equal(winners.length, 1, `round ${round}: ${winners.length} winners`);
        const info = await store.read(name);
        assert.equal(info?.holder, winners[0]?.acquired ? winners[0].lease.holder : undefined);
      }
    });

    it("tokens strictly increase across takeover, release and expiry", async () => {
      const n = uniqueName("tokens");
      const t: bigint[] = [];
      const a1 = await store.acquire(n, "a", 5000);
      assert.ok(a1.acquired);
      t.push(a1.lease.token);
      assert.equal(await store.release(a1.lease), true);
      assert.equal(await store.read(n), null);
      const b1 = await store.acquire(n, "b", 300);
      assert.ok(b1.acquired);
      t.push(b1.lease.token);
      await waitFor("lease to expire", async () => (await store.read(n)) === null, {
        timeoutMs: 5000,
      });
      const c1 = await store.acquire(n, "c", 5000);
      assert.ok(c1.acquired);
      t.push(c1.lease.token);
      for (let i = 1; i < t.length; i++) assert.ok(t[i]! > t[i - 1]!, `tokens ${t.join(",")}`);
      // the old terms can no longer renew
      assert.equal((await store.renew(a1.lease, 5000)).renewed, false);
      assert.equal((await store.renew(b1.lease, 5000)).renewed, false);
    });

    it("an acquire by the live holder answers its term: the same token, extended; its fenced writes go on", async () => {
      // A late acquire (its caller gave up, retried and won) reaching the store after the retry
      // must not end the term the retry won.
      const n = uniqueName("self");
      const other = await fresh();
      const t1 = await store.acquire(n, "a", 400);
      assert.ok(t1.acquired);
      assert.deepEqual(await store.putFenced(t1.lease, "k", "v1"), { ok: true });
      const again = await store.acquire(n, "a", 5000);
      assert.ok(again.acquired, show(again));
      assert.deepEqual(again.lease, t1.lease);
      const info = await store.read(n);
      assert.equal(info?.holder, "a");
      assert.equal(info?.token, t1.lease.token);
      assert.ok((info?.expiresInMs ?? 0) > 3000, `extended: ${info?.expiresInMs} ms left`);
      assert.deepEqual(await store.putFenced(t1.lease, "k", "v2"), { ok: true });
      assert.deepEqual(await store.getFenced(n, "k"), { value: "v2", token: t1.lease.token });
      assert.deepEqual(await store.renew(t1.lease, 5000), { renewed: true });
      // Still held against everyone else.
      const b = await other.acquire(n, "b", 5000);
      assert.ok(!b.acquired && b.current?.holder === "a" && b.current.token === t1.lease.token);
      // Once it has been released (or has expired), the same holder starts a new term.
      assert.ok(await store.release(t1.lease));
      const t2 = await store.acquire(n, "a", 300);
      assert.ok(t2.acquired && t2.lease.token > t1.lease.token);
      await waitFor("the lease to expire", async () => (await store.read(n)) === null, {
        timeoutMs: 5000,
      });
      const t3 = await store.acquire(n, "a", 5000);
      assert.ok(t3.acquired && t3.lease.token > t2.lease.token);
      assert.deepEqual(await store.putFenced(t1.lease, "k", "stale"), {
        ok: false,
        reason: "fenced",
      });
    });

    it("renew keeps the token and extends by the store's clock", async () => {
      const n = uniqueName("renew");
      const a = await store.acquire(n, "a", 400);
      assert.ok(a.acquired);
      const r = await store.renew(a.lease, 5000);
      assert.equal(r.renewed, true);
      const info = await store.read(n);
      assert.equal(info?.token, a.lease.token);
      assert.ok((info?.expiresInMs ?? 0) > 3000);
    });

    it("renew/release by a non-holder or a stale token fails and changes nothing", async () => {
      const n = uniqueName("stale");
      const a = await store.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      const before = await store.read(n);
      const wrongHolder = { ...a.lease, holder: "mallory" };
      const wrongToken = { ...a.lease, token: a.lease.token + 1n };
      const olderToken = { ...a.lease, token: a.lease.token - 1n };
      for (const bad of [wrongHolder, wrongToken, olderToken]) {
        const r = await store.renew(bad, 60_000);
        assert.equal(r.renewed, false);
        if (!r.renewed) assert.equal(r.current?.holder, "a");
        assert.equal(await store.release(bad), false);
      }
      const afterInfo = await store.read(n);
      assert.equal(afterInfo?.holder, "a");
      assert.equal(afterInfo?.token, before?.token);
      assert.ok((afterInfo?.expiresInMs ?? 0) <= (before?.expiresInMs ?? 0) + 50);
    });

    it("an expired lease is acquirable and cannot be renewed by its old term", async () => {
      const n = uniqueName("exp");
      const a = await store.acquire(n, "a", 200);
      assert.ok(a.acquired);
      await waitFor("lease to expire", async () => (await store.read(n)) === null, {
        timeoutMs: 5000,
      });
      const b = await store.acquire(n, "b", 5000);
      assert.ok(b.acquired);
      assert.ok(b.lease.token > a.lease.token);
      assert.equal((await store.renew(a.lease, 5000)).renewed, false);
      assert.equal(await store.release(a.lease), false);
      assert.equal((await store.read(n))?.holder, "b");
    });

    it("list shows live leases; forceRelease frees a lease", async () => {
      const n = uniqueName("list");
      const a = await store.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      const all = await store.list();
      assert.ok(all.some((l) => l.name === n && l.holder === "a"));
      assert.equal(await store.forceRelease(n), true);
      assert.equal(await store.read(n), null);
      assert.equal(await store.forceRelease(n), false);
      const b = await store.acquire(n, "b", 5000);
      assert.ok(b.acquired && b.lease.token > a.lease.token);
    });

    it("putFenced accepts only the current token; expect gives compare-and-set", async () => {
      const n = uniqueName("fenced");
      const a = await store.acquire(n, "a", 5000);
      assert.ok(a.acquired);
      assert.deepEqual(await store.putFenced(a.lease, "cp", "1"), { ok: true });
      assert.deepEqual(await store.getFenced(n, "cp"), { value: "1", token: a.lease.token });
      await store.release(a.lease);
      const b = await store.acquire(n, "b", 5000);
      assert.ok(b.acquired);
      assert.deepEqual(await store.putFenced(a.lease, "cp", "stale"), {
        ok: false,
        reason: "fenced",
      });
      assert.equal((await store.getFenced(n, "cp"))?.value, "1");
      assert.deepEqual(await store.putFenced(b.lease, "cp", "2", { expect: "0" }), {
        ok: false,
        reason: "conflict",
      });
      assert.deepEqual(await store.putFenced(b.lease, "cp", "2", { expect: "1" }), { ok: true });
      assert.deepEqual(await store.putFenced(b.lease, "new", "x", { expect: null }), { ok: true });
      assert.deepEqual(await store.putFenced(b.lease, "new", "y", { expect: null }), {
        ok: false,
        reason: "conflict",
      });
      assert.deepEqual(await store.getFenced(n, "cp"), { value: "2", token: b.lease.token });
      assert.equal(await store.getFenced(n, "missing"), null);
    });

    it("release notification reaches a watcher (where the store has one)", async (t) => {
      if (!store.notifies || !store.watch) {
        t.skip(`${name} does not notify`);
        return;
      }
      const n = uniqueName("watch");
      const watcher = await fresh();
      const events: LeaseEvent[] = [];
      const unwatch = await watcher.watch!(n, (e) => events.push(e));
      try {
        const a = await store.acquire(n, "a", 5000);
        assert.ok(a.acquired);
        await store.release(a.lease);
        await waitFor("release event", () => events.some((e) => e.type === "released"), {
          timeoutMs: 3000,
        });
        assert.ok(events.every((e) => e.name === n));
      } finally {
        await unwatch();
      }
    });

    it("a connection killed by the server between calls: the next renewal succeeds", async (t) => {
      if (!opts.killConnection) {
        t.skip(`${name} has no connection to kill`);
        return;
      }
      const n = uniqueName("kill");
      const s = await fresh();
      const a = await s.acquire(n, "a", 10_000);
      assert.ok(a.acquired);
      const killed = await opts.killConnection(s);
      assert.ok(killed >= 1, `killed ${killed} connections`);
      let sawTransient = false;
      const ok = await waitFor(
        "renew to succeed after reconnect",
        async () => {
          try {
            const r = await s.renew(a.lease, 10_000);
            return r.renewed;
          } catch (e) {
            assert.ok(isStoreError(e), `not a StoreError: ${String(e)}`);
            assert.equal(e.transient, true, `expected transient, got ${e.kind}: ${e.message}`);
            sawTransient = true;
            return false;
          }
        },
        { timeoutMs: 8000, intervalMs: 50 },
      );
      assert.equal(ok, true);
      // Either the driver reconnected transparently or we saw a transient error first
      // (asserted inside the check: any other error fails the test).
      t.diagnostic(`saw transient error: ${sawTransient}`);
      assert.equal((await s.read(n))?.token, a.lease.token);
    });

    it("a connection killed while a renewal is in flight: transient (or resent), and the next renewal succeeds", async (t) => {
      const px = opts.proxied;
      if (!px) {
        t.skip(`${name} is not reached through a fault proxy`);
        return;
      }
      const proxy = new FaultProxy(px.target.host, px.target.port);
      const port = await proxy.start();
      const s = await px.open(port);
      try {
        const n = uniqueName("inflight");
        const a = await s.acquire(n, "a", 10_000);
        assert.ok(a.acquired);
        // Replies are held: the renewal reaches the server, its answer does not come back.
        proxy.halfOpen("down");
        const pending = s.renew(a.lease, 10_000).then(
          (v) => ({ ok: true as const, v }),
          (e: unknown) => ({ ok: false as const, e }),
        );
        await waitFor("the renewal's reply held in the proxy", () => proxy.heldBytes("down") > 0, {
          timeoutMs: 3000,
        });
        const killed = proxy.resetAll();
        assert.ok(killed >= 1, `killed ${killed} connections`);
        proxy.heal();
        const out = await pending;
        if (px.inFlight === "transient") {
          assert.equal(out.ok, false, `the killed renewal resolved: ${JSON.stringify(out)}`);
          const e = (out as { e: unknown }).e;
          assert.ok(isStoreError(e), `not a StoreError: ${String(e)}`);
          assert.equal(e.transient, true, `expected transient, got ${e.kind}: ${e.message}`);
        } else {
          assert.ok(out.ok, `the killed renewal failed: ${String((out as { e: unknown }).e)}`);
          assert.equal((out as { v: { renewed: boolean } }).v.renewed, true);
        }
        const ok = await waitFor(
          "a renewal after the kill",
          async () => {
            try {
              return (await s.renew(a.lease, 10_000)).renewed;
            } catch (e) {
              assert.ok(isStoreError(e) && e.transient, `not transient: ${String(e)}`);
              return false;
            }
          },
          { timeoutMs: 8000, intervalMs: 50 },
        );
        assert.equal(ok, true);
        assert.equal((await s.read(n))?.token, a.lease.token);
      } finally {
        await s.close();
        await proxy.stop();
      }
    });

    // ── renewMany: the shared renewal path's one round trip per batch ───────
    const needsBatch = (t: { skip: (m: string) => void }, s: LeaseStore): boolean => {
      if (s.renewMany) return true;
      t.skip(`${name} has no renewMany`);
      return false;
    };

    it("renewMany: an empty batch answers []", async (t) => {
      if (!needsBatch(t, store)) return;
      assert.deepEqual(await store.renewMany!([]), []);
    });

    it("renewMany: renews the held terms and answers renewed:false with current for exactly the lost ones", async (t) => {
      if (!needsBatch(t, store)) return;
      const n = uniqueName("many");
      const other = await fresh();
      const [kept1, released, takenOver, expired, expiredTaken, kept2] = await Promise.all([
        store.acquire(`${n}-kept1`, "a", 1500),
        store.acquire(`${n}-released`, "a", 5000),
        store.acquire(`${n}-taken`, "a", 5000),
        store.acquire(`${n}-expired`, "a", 200),
        store.acquire(`${n}-expired-taken`, "a", 200),
        store.acquire(`${n}-kept2`, "a", 1500),
      ]);
      for (const r of [kept1, released, takenOver, expired, expiredTaken, kept2])
        assert.ok(r.acquired);
      if (
        !kept1.acquired ||
        !released.acquired ||
        !takenOver.acquired ||
        !expired.acquired ||
        !expiredTaken.acquired ||
        !kept2.acquired
      )
        return;
      assert.equal(await store.release(released.lease), true);
      assert.equal(await other.forceRelease(takenOver.lease.name), true);
      const b = await other.acquire(takenOver.lease.name, "b", 5000);
      assert.ok(b.acquired);
      await waitFor(
        "the short leases to expire",
        async () =>
          (await store.read(expired.lease.name)) === null &&
          (await store.read(expiredTaken.lease.name)) === null,
        { timeoutMs: 5000 },
      );
      const c = await other.acquire(expiredTaken.lease.name, "c", 5000);
      assert.ok(c.acquired);
      const wrongHolder = { ...kept1.lease, holder: "mallory" };
      const staleToken = { ...kept2.lease, token: kept2.lease.token - 1n };
      const batch = [
        kept1.lease,
        released.lease,
        takenOver.lease,
        expired.lease,
        expiredTaken.lease,
        wrongHolder,
        staleToken,
        kept2.lease,
      ];
      const res = await store.renewMany!(itemsOf(batch, 8000));
      assert.equal(res.length, batch.length);
      assert.deepEqual(
        res.map((r) => r.renewed),
        [true, false, false, false, false, false, false, true],
      );
      const cur = (i: number) => {
        const r = res[i]!;
        assert.ok(!r.renewed);
        return r.current;
      };
      assert.equal(cur(1), null, "released: nobody holds it");
      assert.equal(cur(2)?.holder, "b", "taken over: b holds it");
      assert.equal(cur(2)?.token, b.lease.token);
      assert.equal(cur(3), null, "expired: nobody holds it");
      assert.equal(cur(4)?.holder, "c", "expired and taken: c holds it");
      assert.equal(cur(5)?.holder, "a", "wrong holder: a holds it");
      assert.equal(cur(5)?.token, kept1.lease.token);
      assert.equal(cur(6)?.holder, "a", "stale token: a holds it");
      // The same batch again at the same ttl (on etcd the kept keys now sit on
      // the session of that ttl, so this is the one-round-trip path).
      const again = await store.renewMany!(itemsOf(batch, 8000));
      assert.deepEqual(
        again.map((r) => r.renewed),
        [true, false, false, false, false, false, false, true],
      );
      for (const i of [5, 6]) {
        const r = again[i]!;
        assert.ok(
          !r.renewed && r.current?.holder === "a",
          `item ${i}: ${JSON.stringify(r.renewed)}`,
        );
      }
      for (const kept of [kept1.lease, kept2.lease]) {
        const info = await store.read(kept.name);
        assert.equal(info?.token, kept.token, "renewing keeps the token");
        assert.ok((info?.expiresInMs ?? 0) > 5000, `extended to 8000: ${info?.expiresInMs}`);
      }
      // Nothing lost was touched.
      assert.equal(await store.read(released.lease.name), null);
      assert.equal(await store.read(expired.lease.name), null);
      assert.equal((await store.read(takenOver.lease.name))?.token, b.lease.token);
      assert.equal((await store.read(expiredTaken.lease.name))?.token, c.lease.token);
    });

    it("renewMany: duplicate items are each judged as renew would judge them", async (t) => {
      if (!needsBatch(t, store)) return;
      const n = uniqueName("dup");
      const a = await store.acquire(`${n}-a`, "a", 5000);
      const b = await store.acquire(`${n}-b`, "a", 5000);
      assert.ok(a.acquired && b.acquired);
      const stale = { ...a.lease, token: a.lease.token - 1n };
      // The longer ttl comes last: as renewed one after the other, and so that
      // every caller's trust window ends before the lease does.
      const res = await store.renewMany!([
        { lease: a.lease, ttlMs: 6000 },
        { lease: b.lease, ttlMs: 6000 },
        { lease: a.lease, ttlMs: 20_000 },
        { lease: stale, ttlMs: 7000 },
        { lease: b.lease, ttlMs: 20_000 },
      ]);
      assert.deepEqual(
        res.map((r) => r.renewed),
        [true, true, true, false, true],
      );
      const r3 = res[3]!;
      assert.ok(!r3.renewed && r3.current?.holder === "a" && r3.current.token === a.lease.token);
      for (const l of [a.lease, b.lease]) {
        const info = await store.read(l.name);
        assert.equal(info?.token, l.token);
        assert.ok(
          (info?.expiresInMs ?? 0) > 15_000,
          `renewed to the longer ttl: ${info?.expiresInMs}`,
        );
      }
    });

    it("renewMany: a lease released by someone else while the batch is out is not revived; the others renew", async (t) => {
      if (!needsBatch(t, store)) return;
      const n = uniqueName("midbatch");
      const other = await fresh();
      const leases = await acquireMany(store, n, 200, "a", 5000);
      const victim = leases[137]!;
      // Both go out at once: the release lands before, during or after the batch.
      const [res, released] = await Promise.all([
        store.renewMany!(itemsOf(leases, 8000)),
        other.forceRelease(victim.name),
      ]);
      assert.equal(released, true);
      assert.equal(res.length, leases.length);
      for (const [i, r] of res.entries()) {
        if (i === 137) {
          // Renewed before the release, or found gone: never someone else's.
          if (!r.renewed) assert.equal(r.current, null);
        } else assert.equal(r.renewed, true, `item ${i}`);
      }
      assert.equal(
        await store.read(victim.name),
        null,
        `the released lease stays released (its answer ${JSON.stringify(res[137])}; read by the releaser ${JSON.stringify(await other.read(victim.name), (_k, v) => (typeof v === "bigint" ? String(v) : v))})`,
      );
      assert.equal((await store.renew(victim, 5000)).renewed, false);
      const [again] = await store.renewMany!([{ lease: victim, ttlMs: 5000 }]);
      assert.deepEqual(again, { renewed: false, current: null });
      assert.equal(await store.read(victim.name), null);
    });

    it("renewMany: a batch that times out throws a transient StoreError; the next batch renews", async (t) => {
      if (!needsBatch(t, store)) return;
      let stalled: Awaited<ReturnType<NonNullable<ConformanceOptions["stallable"]>>> | undefined;
      let proxy: FaultProxy | undefined;
      if (opts.stallable) stalled = await opts.stallable();
      else if (opts.proxied) {
        const px = opts.proxied;
        const pr = new FaultProxy(px.target.host, px.target.port);
        proxy = pr;
        const s = await px.open(await pr.start());
        let open = 0;
        stalled = {
          store: s,
          stall: async () => {
            open = pr.connections;
            pr.blackhole();
          },
          // The partition heals: held bytes flow on (as TCP retransmits them).
          heal: async () => pr.heal(),
          close: async () => {
            // A driver that cancels a timed-out query over a new connection
            // (postgres.js) finishes that cancel before the proxy resets it.
            await waitFor("cancel connections to end", () => pr.connections <= open, {
              timeoutMs: 3000,
            }).catch(() => {});
            await s.close();
            await pr.stop();
          },
        };
      } else {
        t.skip(`${name}: no way to stall it`);
        return;
      }
      try {
        const s = stalled.store;
        const n = uniqueName("timeout");
        const leases = await acquireMany(s, n, 20, "a", 30_000);
        const before = await Promise.all(leases.map((l) => store.read(l.name)));
        await stalled.stall();
        const out = await s.renewMany!(itemsOf(leases, 60_000)).then(
          (v) => ({ ok: true as const, v }),
          (e: unknown) => ({ ok: false as const, e }),
        );
        assert.equal(out.ok, false, "the stalled batch answered");
        const e = (out as { e: unknown }).e;
        assert.ok(isStoreError(e), `not a StoreError: ${String(e)}`);
        assert.equal(e.transient, true, `expected transient, got ${e.kind}: ${e.message}`);
        await stalled.heal();
        const res = await waitFor(
          "a batch after the heal",
          async () => {
            try {
              return await s.renewMany!(itemsOf(leases, 30_000));
            } catch (err) {
              assert.ok(isStoreError(err) && err.transient, `not transient: ${String(err)}`);
              return null;
            }
          },
          { timeoutMs: 10_000, intervalMs: 50 },
        );
        assert.ok(res.every((r) => r.renewed));
        const afterHeal = await Promise.all(leases.map((l) => store.read(l.name)));
        for (const [i, info] of afterHeal.entries()) {
          assert.equal(info?.token, before[i]?.token, "same terms");
        }
      } finally {
        await stalled.close();
        await proxy?.stop();
      }
    });

    it("renewMany: 1 000 items in one call is one round trip", async (t) => {
      if (!needsBatch(t, store)) return;
      if (!opts.counted) {
        t.skip(`${name}: requests are not counted`);
        return;
      }
      const { store: s, requests } = await opts.counted.open();
      try {
        const n = uniqueName("k");
        const leases = await acquireMany(s, n, 1000, "a", 30_000);
        // A first batch settles what a store sets up once (a session lease, a cached script).
        assert.ok((await s.renewMany!(itemsOf(leases, 30_000))).every((r) => r.renewed));
        const before = requests();
        const res = await s.renewMany!(itemsOf(leases, 30_000));
        const sent = requests() - before;
        assert.equal(res.length, 1000);
        assert.ok(res.every((r) => r.renewed));
        t.diagnostic(`requests for 1 000 renewals: ${sent}`);
        assert.equal(sent, opts.counted.perBatch, `requests sent for one batch of 1 000`);
      } finally {
        await s.close();
      }
    });

    // ── acquireMany: electing many leases in one round trip per batch ──────
    const needsAcquireMany = (t: { skip: (m: string) => void }, s: LeaseStore): boolean => {
      if (s.acquireMany) return true;
      t.skip(`${name} has no acquireMany`);
      return false;
    };
    const show = (v: unknown) =>
      JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));

    it("acquireMany: an empty batch answers []", async (t) => {
      if (!needsAcquireMany(t, store)) return;
      assert.deepEqual(await store.acquireMany!([]), []);
    });

    it("acquireMany: free and expired leases are acquired, own live ones answer their term; held ones name their holder", async (t) => {
      if (!needsAcquireMany(t, store)) return;
      const n = uniqueName("amany");
      const other = await fresh();
      const held = await other.acquire(`${n}-held`, "b", 30_000);
      const expired = await other.acquire(`${n}-expired`, "b", 200);
      const released = await other.acquire(`${n}-released`, "b", 30_000);
      const own = await store.acquire(`${n}-own`, "a", 30_000);
      assert.ok(held.acquired && expired.acquired && released.acquired && own.acquired);
      assert.ok(await other.release(released.lease));
      await waitFor(
        "the short lease to expire",
        async () => (await store.read(`${n}-expired`)) === null,
        {
          timeoutMs: 10_000,
          intervalMs: 50,
        },
      );
      const names = ["free", "held", "expired", "released", "own"].map((k) => `${n}-${k}`);
      const res = await store.acquireMany!(
        names.map((name) => ({ name, holder: "a", ttlMs: 30_000 })),
      );
      assert.equal(res.length, names.length);
      const [free, h, ex, rel, ow] = res;
      for (const [k, r] of [
        ["free", free],
        ["expired", ex],
        ["released", rel],
        ["own", ow],
      ] as const) {
        assert.ok(r?.acquired, `${k}: ${show(r)}`);
        assert.equal(r.lease.name, `${n}-${k}`);
        assert.equal(r.lease.holder, "a");
        assert.ok(r.lease.token > 0n);
      }
      assert.ok(h && !h.acquired, show(h));
      assert.equal(h.current?.holder, "b");
      assert.equal(h.current?.token, held.lease.token);
      assert.ok(h.current.expiresInMs > 0 && h.current.expiresInMs <= 30_000);
      // Tokens strictly increase per lease, as with acquire; the own live term goes on.
      assert.ok(ex?.acquired && ex.lease.token > expired.lease.token);
      assert.ok(rel?.acquired && rel.lease.token > released.lease.token);
      assert.ok(ow?.acquired && ow.lease.token === own.lease.token, show(ow));
      // Each acquired term is the lease's current term: read names it, renew keeps it.
      for (const r of [free, ex, rel, ow]) {
        if (!r?.acquired) continue;
        const info = await store.read(r.lease.name);
        assert.equal(info?.token, r.lease.token);
        assert.equal(info?.holder, "a");
        assert.deepEqual(await store.renew(r.lease, 30_000), { renewed: true });
      }
      // The held lease is untouched.
      assert.equal((await other.read(`${n}-held`))?.token, held.lease.token);
      // A single acquire after the batch takes a still larger token.
      assert.ok(await store.release((free as { lease: LeaseRef }).lease));
      const again = await other.acquire(`${n}-free`, "b", 30_000);
      assert.ok(again.acquired && free?.acquired && again.lease.token > free.lease.token);
    });

    it("acquireMany: one name twice is judged in order, as two acquires would be", async (t) => {
      if (!needsAcquireMany(t, store)) return;
      const n = uniqueName("adup");
      const res = await store.acquireMany!([
        { name: `${n}-x`, holder: "a", ttlMs: 30_000 },
        { name: `${n}-y`, holder: "a", ttlMs: 30_000 },
        { name: `${n}-x`, holder: "b", ttlMs: 30_000 },
        { name: `${n}-y`, holder: "a", ttlMs: 30_000 },
      ]);
      const [x1, y1, x2, y2] = res;
      assert.ok(x1?.acquired && y1?.acquired && y2?.acquired, show(res));
      // The second holder of x finds the first's term.
      assert.ok(x2 && !x2.acquired, show(x2));
      assert.equal(x2.current?.holder, "a");
      assert.equal(x2.current?.token, x1.lease.token);
      // The same holder twice: one term; the second answers the first's token.
      assert.equal(y2.lease.token, y1.lease.token, show(res));
      assert.equal((await store.read(`${n}-y`))?.token, y1.lease.token);
      assert.deepEqual(await store.renew(y1.lease, 30_000), { renewed: true });
    });

    it("acquireMany: tokens keep increasing between single acquires and batches", async (t) => {
      if (!needsAcquireMany(t, store)) return;
      const n = `${uniqueName("amono")}-l`;
      let last = 0n;
      for (let round = 0; round < 3; round++) {
        const a = await store.acquire(n, "a", 30_000);
        assert.ok(a.acquired && a.lease.token > last, `acquire ${round}`);
        last = a.lease.token;
        assert.ok(await store.release(a.lease));
        const [b] = await store.acquireMany!([{ name: n, holder: "a", ttlMs: 30_000 }]);
        assert.ok(b?.acquired && b.lease.token > last, `acquireMany ${round}: ${show(b)}`);
        last = b.lease.token;
        assert.ok(await store.release(b.lease));
      }
    });

    it("acquireMany: an item of the live holder answers its term; its fenced writes go on", async (t) => {
      if (!needsAcquireMany(t, store)) return;
      const n = uniqueName("aself");
      const t1 = await store.acquire(n, "a", 400);
      assert.ok(t1.acquired);
      const [again] = await store.acquireMany!([{ name: n, holder: "a", ttlMs: 5000 }]);
      assert.ok(again?.acquired, show(again));
      assert.deepEqual(again.lease, t1.lease);
      const info = await store.read(n);
      assert.equal(info?.token, t1.lease.token);
      assert.ok((info?.expiresInMs ?? 0) > 3000, `extended: ${info?.expiresInMs} ms left`);
      assert.deepEqual(await store.putFenced(t1.lease, "k", "v"), { ok: true });
      assert.deepEqual(await store.renew(t1.lease, 5000), { renewed: true });
    });

    it("acquireMany: bad items are a ConfigError naming the item", async (t) => {
      if (!needsAcquireMany(t, store)) return;
      await assert.rejects(
        store.acquireMany!([
          { name: "ok", holder: "a", ttlMs: 1000 },
          { name: "", holder: "a", ttlMs: 1000 },
        ]),
        (e: Error) => e.name === "ConfigError" && /items\[1\]\.name/.test(e.message),
      );
      await assert.rejects(
        store.acquireMany!([{ name: "ok", holder: "a", ttlMs: 0 }]),
        (e: Error) => e.name === "ConfigError" && /items\[0\]\.ttlMs/.test(e.message),
      );
    });

    it("acquireMany: 1 000 free leases in one call is one round trip", async (t) => {
      if (!needsAcquireMany(t, store)) return;
      if (!opts.counted) {
        t.skip(`${name}: requests are not counted`);
        return;
      }
      const { store: s, requests } = await opts.counted.open();
      try {
        const n = uniqueName("ak");
        // A first call settles what a store sets up once (a session lease, a cached script).
        assert.ok(
          (await s.acquireMany!([{ name: `${n}-warm`, holder: "a", ttlMs: 30_000 }]))[0]?.acquired,
        );
        const items = Array.from({ length: 1000 }, (_, i) => ({
          name: `${n}-${i}`,
          holder: "a",
          ttlMs: 30_000,
        }));
        const before = requests();
        const res = await s.acquireMany!(items);
        const sent = requests() - before;
        assert.equal(res.length, 1000);
        assert.ok(res.every((r, i) => r.acquired && r.lease.name === `${n}-${i}`));
        t.diagnostic(`requests for 1 000 acquires: ${sent}`);
        const expected = opts.counted.perAcquireBatch ?? opts.counted.perBatch;
        assert.equal(sent, expected, `requests sent for one batch of 1 000`);
        // Every one is the lease's term.
        assert.ok(
          (
            await s.renewMany!(
              res.map((r) => ({ lease: (r as { lease: LeaseRef }).lease, ttlMs: 30_000 })),
            )
          ).every((r) => r.renewed),
        );
      } finally {
        await s.close();
      }
    });

    // ── releaseMany: handing many leases over in one round trip ────────────
    const needsReleaseMany = (t: { skip: (m: string) => void }, s: LeaseStore): boolean => {
      if (s.releaseMany) return true;
      t.skip(`${name} has no releaseMany`);
      return false;
    };
    const grab = async (s: LeaseStore, n: string, holder: string, ttlMs = 30_000) => {
      const r = await s.acquire(n, holder, ttlMs);
      assert.ok(r.acquired, `acquire ${n}: ${show(r)}`);
      return r.lease;
    };

    it("releaseMany: an empty batch answers []", async (t) => {
      if (!needsReleaseMany(t, store)) return;
      assert.deepEqual(await store.releaseMany!([]), []);
    });

    it("releaseMany: own terms are released; stale, foreign and expired terms answer false and change nothing", async (t) => {
      if (!needsReleaseMany(t, store)) return;
      const n = uniqueName("rm");
      const own1 = await grab(store, `${n}-own1`, "a");
      const own2 = await grab(store, `${n}-own2`, "a");
      const foreign = await grab(store, `${n}-foreign`, "b");
      const old = await grab(store, `${n}-stale`, "a");
      assert.ok(await store.release(old));
      const current = await grab(store, `${n}-stale`, "a");
      const expiring = await grab(store, `${n}-expired`, "a", 300);
      await waitFor(
        "the short lease to expire",
        async () => (await store.read(`${n}-expired`)) === null,
        {
          timeoutMs: 5000,
        },
      );
      const res = await store.releaseMany!([
        own1,
        { ...foreign, holder: "a" },
        old,
        { name: `${n}-never`, holder: "a", token: 1n },
        expiring,
        own2,
      ]);
      assert.deepEqual(res, [true, false, false, false, false, true]);
      assert.equal(await store.read(`${n}-own1`), null);
      assert.equal(await store.read(`${n}-own2`), null);
      const f = await store.read(`${n}-foreign`);
      assert.equal(f?.holder, "b");
      assert.equal(f?.token, foreign.token);
      const c = await store.read(`${n}-stale`);
      assert.equal(c?.holder, "a");
      assert.equal(c?.token, current.token);
      assert.equal(await store.read(`${n}-never`), null);
      // Released leases are free for anyone, with a larger token.
      const next = await grab(store, `${n}-own1`, "c");
      assert.ok(next.token > own1.token);
      // The foreign lease can still be renewed by its holder: nothing changed.
      assert.deepEqual(await store.renew(foreign, 30_000), { renewed: true });
    });

    it("releaseMany: the same term twice is released once; of one name's two terms only the live one", async (t) => {
      if (!needsReleaseMany(t, store)) return;
      const n = uniqueName("rmdup");
      const a = await grab(store, `${n}-a`, "a");
      const old = await grab(store, `${n}-b`, "a");
      assert.ok(await store.release(old));
      const live = await grab(store, `${n}-b`, "a");
      assert.deepEqual(await store.releaseMany!([a, old, a, live, live]), [
        true,
        false,
        false,
        true,
        false,
      ]);
      assert.equal(await store.read(`${n}-a`), null);
      assert.equal(await store.read(`${n}-b`), null);
    });

    it("releaseMany: every released lease notifies its watchers (where the store has them)", async (t) => {
      if (!needsReleaseMany(t, store)) return;
      if (!store.notifies || !store.watch) {
        t.skip(`${name} does not notify`);
        return;
      }
      const n = uniqueName("rmw");
      const names = [0, 1, 2].map((i) => `${n}-${i}`);
      const watcher = await fresh();
      const released = new Set<string>();
      const unwatch = await Promise.all(
        names.map((x) =>
          watcher.watch!(x, (e) => {
            if (e.type === "released") released.add(e.name);
          }),
        ),
      );
      try {
        const leases = await Promise.all(names.map((x) => grab(store, x, "a")));
        assert.deepEqual(await store.releaseMany!(leases), [true, true, true]);
        await waitFor("a release event per lease", () => released.size === names.length, {
          timeoutMs: 3000,
        });
        assert.deepEqual([...released].sort(), names);
      } finally {
        await Promise.all(unwatch.map((u) => u()));
      }
    });

    it("releaseMany: bad items are a ConfigError naming the item", async (t) => {
      if (!needsReleaseMany(t, store)) return;
      await assert.rejects(
        store.releaseMany!([
          { name: "ok", holder: "a", token: 1n },
          { name: "", holder: "a", token: 1n },
        ]),
        (e: Error) => e.name === "ConfigError" && /leases\[1\]\.name/.test(e.message),
      );
      await assert.rejects(
        store.releaseMany!("nope" as unknown as LeaseRef[]),
        (e: Error) => e.name === "ConfigError" && /leases/.test(e.message),
      );
    });

    it("releaseMany: 1 000 leases in one call is one round trip", async (t) => {
      if (!needsReleaseMany(t, store)) return;
      if (!opts.counted) {
        t.skip(`${name}: requests are not counted`);
        return;
      }
      const { store: s, requests } = await opts.counted.open();
      try {
        const n = uniqueName("rk");
        const leases = await acquireMany(s, n, 1001, "a", 30_000);
        // A first call settles what a store sets up once (a cached script).
        assert.deepEqual(await s.releaseMany!([leases[1000]!]), [true]);
        const before = requests();
        const res = await s.releaseMany!(leases.slice(0, 1000));
        const sent = requests() - before;
        assert.equal(res.length, 1000);
        assert.ok(res.every((r) => r === true));
        t.diagnostic(`requests for 1 000 releases: ${sent}`);
        assert.equal(
          sent,
          opts.counted.perReleaseBatch ?? 1,
          "requests sent for one batch of 1 000",
        );
        assert.equal(await s.read(`${n}-0`), null);
        assert.equal(await s.read(`${n}-999`), null);
      } finally {
        await s.close();
      }
    });

    it("tokens keep increasing across a server restart", async (t) => {
      if (!opts.restartServer) {
        t.skip(`${name}: no restart hook`);
        return;
      }
      const n = uniqueName("restart");
      const a = await store.acquire(n, "a", 60_000);
      assert.ok(a.acquired);
      await opts.restartServer();
      const s2 = await fresh();
      const b = await waitFor(
        "acquire after restart",
        async () => {
          const r = await s2.acquire(n, "a", 5000);
          return r.acquired ? r : null;
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      // A store that kept the live lease answers its term (the same token); one that lost it
      // starts a new term with a larger token. Never a smaller one.
      assert.ok(b.lease.token >= a.lease.token, `${b.lease.token} >= ${a.lease.token}`);
      assert.ok(await s2.release(b.lease));
      const c = await s2.acquire(n, "c", 5000);
      assert.ok(c.acquired && c.lease.token > b.lease.token, show(c));
    });
  });
}
