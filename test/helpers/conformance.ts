import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isStoreError } from "../../src/errors.js";
import type { LeaseEvent, LeaseStore } from "../../src/store/types.js";
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
      // same holder re-acquiring starts a new term, too
      const c2 = await store.acquire(n, "c", 5000);
      assert.ok(c2.acquired);
      t.push(c2.lease.token);
      for (let i = 1; i < t.length; i++) assert.ok(t[i]! > t[i - 1]!, `tokens ${t.join(",")}`);
      // the old term of c can no longer renew
      const stale = await store.renew(c1.lease, 5000);
      assert.equal(stale.renewed, false);
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
      assert.ok(b.lease.token > a.lease.token, `${b.lease.token} > ${a.lease.token}`);
    });
  });
}
