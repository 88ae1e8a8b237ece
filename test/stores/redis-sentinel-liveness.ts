/**
 * Kept out of `npm test` (scripts/test.mjs runs *.test.js only) until a stall
 * is explained: inside the whole suite, 1 run in 4 had the elector keep its
 * term across the failover while no fenced write was accepted for 20 s; alone
 * it passes. Run with `npm run test:sentinel-liveness`. See docs/CHAOS.md
 * ("Redis with Sentinel").
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createElector } from "../../src/elector/index.js";
import { openRedisStore, type RedisStore } from "../../src/stores/redis/index.js";
import { RedisSentinelGroup, sentinelUnavailable } from "../helpers/redis-sentinel.js";
import { requireService } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

/** Both fenced writes refuse `stale` and take `current`, on the primary the store now reaches. */
const missing = sentinelUnavailable();
describe(
  "redis: an elector across a Sentinel failover (liveness; run by npm run test:sentinel-liveness)",
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

    it("an elector keeps or regains leadership across a failover; its tokens only grow and its fenced writes stay ordered", async (t) => {
      const store = await open();
      const name = uniqueName("sentinel-elector");
      const elector = createElector({ store, name, ttlMs: 3000, retryMs: 200 });
      const accepted: bigint[] = [];
      const terms: bigint[] = [];
      elector.on("elected", (term) => terms.push(term.token));
      const seen: string[] = [];
      elector.on("elected", (term) => seen.push(`elected ${term.token}`));
      elector.on("demoted", (d) => seen.push(`demoted (${d.reason})`));
      let seq = 0;
      elector.every(100, async (term) => {
        const r = await store.putFenced(term, "seq", String(++seq));
        if (r.ok) accepted.push(term.token);
      });
      try {
        await elector.start();
        await waitFor("leading with accepted writes", () => accepted.length >= 3, {
          timeoutMs: 10_000,
        });
        await group.waitReplicaSynced();
        const oldPrimary = await group.killPrimary();
        const killAt = performance.now();
        await group.waitPromoted(oldPrimary);
        const before = accepted.length;
        await waitFor(
          `fenced writes accepted by the promoted primary (${seen.join("; ")})`,
          () => (accepted.length > before + 3 ? true : null),
          { timeoutMs: 20_000 },
        );
        t.diagnostic(
          `kill → writes again: ${Math.round(performance.now() - killAt)} ms; terms ${terms.join(", ")}`,
        );
        assert.ok(elector.isLeader());
        for (let i = 1; i < terms.length; i++)
          assert.ok(terms[i]! > terms[i - 1]!, `terms ${terms}`);
        for (let i = 1; i < accepted.length; i++) {
          assert.ok(accepted[i]! >= accepted[i - 1]!, `accepted tokens went back: ${accepted}`);
        }
        await group.restartAsReplica(oldPrimary);
      } finally {
        await elector.stop();
      }
    });
  },
);
