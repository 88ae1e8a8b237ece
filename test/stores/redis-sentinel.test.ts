import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isFencedError } from "../../src/errors.js";
import type { LeaseRef } from "../../src/store/types.js";
import { openRedisStore, type RedisStore } from "../../src/stores/redis/index.js";
import { RedisSentinelGroup, sentinelUnavailable } from "../helpers/redis-sentinel.js";
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
    let group: RedisSentinelGroup;
    const stores: RedisStore[] = [];
    const open = async () => {
      // restartGuard off would hide nothing here: the promoted replica has been up for long.
      const s = await openRedisStore(group.url, { commandTimeoutMs: 1000 });
      stores.push(s);
      return s;
    };
    before(async () => {
      group = await RedisSentinelGroup.start({ downAfterMs: 500, failoverTimeoutMs: 2000 });
    });
    after(async () => {
      for (const s of stores) await s.close().catch(() => {});
      await group?.stop();
    });

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
      await group.waitReplicaSynced();
      const oldPrimary = await group.primaryPort();
      const replica = group.nodes.find((x) => x.port !== oldPrimary)!.port;
      await group.freezeReplication();
      const b = await acquired(store, n, "B");
      assert.deepEqual(await store.putFenced(b.lease, "cp", "by B"), { ok: true });
      // The replica missed B's term: it still holds the third token, and no lease.
      assert.equal(await group.getOn(replica, `tenure:{${n}}:token`), last.toString());
      assert.equal(await group.getOn(replica, `tenure:{${n}}:lease`), null);

      const killAt = performance.now();
      await group.killPrimary();
      const promoted = await group.waitPromoted(oldPrimary);
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
      await group.restartAsReplica(oldPrimary);
      const r = await store.read(n);
      assert.equal(r?.holder, "C");
      assert.equal(r?.token, c.lease.token);
    });
  },
);
