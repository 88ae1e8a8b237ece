import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFencedError } from "../../src/errors.js";
import type { LeaseRef } from "../../src/store/types.js";
import type { RedisStore } from "../../src/stores/redis/index.js";
import { sentinelFixture, sentinelUnavailable } from "../helpers/redis-sentinel.js";
import { requireService } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

/** Both fenced writes refuse `stale` and take `current`, on the primary the store now reaches. */
async function onlyCurrentWrites(store: RedisStore, stale: LeaseRef, current: LeaseRef) {
  assert.deepEqual(await store.putFenced(stale, "cp", "stale"), { ok: false, reason: "fenced" });
  await assert.rejects(store.fencedSet(stale, store.taggedKey(stale.name, "k"), "stale"), (e) =>
    isFencedError(e),
  );
  assert.deepEqual(await store.putFenced(current, "cp", `by ${current.holder}`), { ok: true });
  await store.fencedSet(current, store.taggedKey(current.name, "k"), current.holder);
  assert.equal((await store.getFenced(current.name, "cp"))?.value, `by ${current.holder}`);
}

/**
 * Acquires `name` for `holder` (ttl 5 s), retrying while the store answers
 * "not yet" (the restart guard of servers younger than the ttl) or fails
 * (the client finding the promoted primary).
 */
async function acquired(store: RedisStore, name: string, holder: string) {
  return waitFor(
    `${holder}'s acquire of ${name}`,
    async () => {
      const r = await store.acquire(name, holder, 5000);
      if (!r.acquired && r.current) throw new Error(`held by ${r.current.holder}`);
      return r.acquired ? r : null;
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  );
}

const missing = sentinelUnavailable();
describe(
  "redis: failover behind Sentinel (primary + replica + 3 sentinels)",
  requireService("redis-server / redis-sentinel", missing === null, missing ?? ""),
  () => {
    const fx = sentinelFixture();
    const open = () => fx.open();

    it("a term the replica never saw: the promoted primary's next token is larger, and only its term writes", async (t) => {
      const store = await open();
      const n = uniqueName("sentinel");
      let last = 0n;
      for (let i = 1; i <= 3; i++) {
        const a = await acquired(store, n, `h${i}`);
        assert.ok(a.lease.token > last);
        last = a.lease.token;
        await store.release(a.lease);
      }
      await fx.group.waitReplicaSynced();
      const oldPrimary = await fx.group.primaryPort();
      const replica = fx.group.nodes.find((x) => x.port !== oldPrimary)!.port;
      await fx.group.freezeReplication();
      const b = await acquired(store, n, "B");
      assert.deepEqual(await store.putFenced(b.lease, "cp", "by B"), { ok: true });
      // The replica missed B's term: it still holds the third token, and no lease.
      assert.equal(await fx.group.getOn(replica, `tenure:{${n}}:token`), last.toString());
      assert.equal(await fx.group.getOn(replica, `tenure:{${n}}:lease`), null);

      const killAt = performance.now();
      await fx.group.killPrimary();
      const promoted = await fx.group.waitPromoted(oldPrimary);
      assert.equal(promoted, replica);
      const promotedMs = Math.round(performance.now() - killAt);
      // The same store follows: its client asks the sentinels again.
      const c = await acquired(store, n, "C");
      t.diagnostic(
        `kill → promoted ${promotedMs} ms, → C's term ${Math.round(performance.now() - killAt)} ms; tokens: 3rd ${last}, B ${b.lease.token} (lost), C ${c.lease.token} (+${Number(c.lease.token - b.lease.token) / 1000} ms of server clock)`,
      );
      assert.ok(
        c.lease.token > b.lease.token,
        `token after failover ${c.lease.token} must exceed the lost term's ${b.lease.token}`,
      );
      await onlyCurrentWrites(store, b.lease, c.lease);

      // The old primary comes back (empty) as a replica: nothing changes for the store.
      await fx.group.restartAsReplica(oldPrimary);
      const r = await store.read(n);
      assert.equal(r?.holder, "C");
      assert.equal(r?.token, c.lease.token);
    });

    it("a failover announced while the client is still asking a sentinel for the primary: the store reconnects", async (t) => {
      // ioredis' failover detector ends the connector's attempt when
      // +switch-master arrives while it waits for a sentinel's answer, and
      // ioredis then ends the client for good ("Connection is closed." on every
      // call): the chaos stall redis-sentinel:failover-lagging:1479544978.
      // Sentinel 0 (the one the client asks first) is paused so that wait
      // spans the whole failover.
      await fx.group.ensureReplica();
      const store = await fx.open({ commandTimeoutMs: 10_000 });
      const n = uniqueName("sentinel-race");
      const a = await acquired(store, n, "A");
      await store.release(a.lease);
      const oldPrimary = await fx.group.primaryPort();
      fx.group.pauseSentinel(0);
      try {
        await fx.group.killPrimary();
        await fx.group.waitPromoted(oldPrimary);
        // One more round trip to each live sentinel: their +switch-master,
        // published before, has reached this process by its reply.
        for (const i of [1, 2]) await fx.group.sentinelPing(i);
      } finally {
        fx.group.resumeSentinel(0);
      }
      const resumedAt = performance.now();
      // A failing call is rethrown by waitFor when time runs out (its last error).
      const b = await waitFor(
        "an acquire on the promoted primary",
        async () => {
          const r = await store.acquire(n, "B", 5000);
          return r.acquired ? r : null;
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      t.diagnostic(`resumed → B's term ${Math.round(performance.now() - resumedAt)} ms`);
      assert.ok(b.lease.token > a.lease.token);
      await fx.group.restartAsReplica(oldPrimary);
    });

    it("a sentinel that accepts connections but never answers is passed over", async () => {
      await fx.group.ensureReplica();
      const store = await fx.open({ commandTimeoutMs: 1500 });
      const n = uniqueName("sentinel-hung");
      const a = await acquired(store, n, "A");
      await store.release(a.lease);
      const oldPrimary = await fx.group.primaryPort();
      fx.group.pauseSentinel(0);
      try {
        await fx.group.killPrimary();
        await fx.group.waitPromoted(oldPrimary);
        const b = await acquired(store, n, "B");
        assert.ok(b.lease.token > a.lease.token);
      } finally {
        fx.group.resumeSentinel(0);
      }
      await fx.group.restartAsReplica(oldPrimary);
    });
  },
);
