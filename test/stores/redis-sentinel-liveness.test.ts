/**
 * An elector across a Sentinel failover, in its own file (its own group of
 * throwaway servers). It ran apart from `npm test` while, on a loaded
 * machine, the client could die for good during the failover (every call
 * "Connection is closed."): fixed in openRedisStore, see
 * test/stores/redis-sentinel.test.ts ("still asking a sentinel").
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createElector } from "../../src/elector/index.js";
import { sentinelFixture, sentinelUnavailable } from "../helpers/redis-sentinel.js";
import { requireService } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

const missing = sentinelUnavailable();
describe(
  "redis: an elector across a Sentinel failover (liveness)",
  requireService("redis-server / redis-sentinel", missing === null, missing ?? ""),
  () => {
    const fx = sentinelFixture();
    const open = () => fx.open();

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
        await fx.group.waitReplicaSynced();
        const oldPrimary = await fx.group.killPrimary();
        const killAt = performance.now();
        await fx.group.waitPromoted(oldPrimary);
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
        await fx.group.restartAsReplica(oldPrimary);
      } finally {
        await elector.stop();
      }
    });
  },
);
