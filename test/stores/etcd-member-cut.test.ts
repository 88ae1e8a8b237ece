/**
 * A 3-member etcd cluster with one member cut off (its client port behind a
 * fault proxy that black-holes both ways: connections are accepted, nothing
 * is answered). The store must pass over that member: a leader keeps its
 * term through the cut, a store opened during it answers promptly, and a
 * candidate takes over promptly once the leader resigns.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createElector, type Elector } from "../../src/elector/index.js";
import { openStore } from "../../src/open.js";
import type { LeaseStore } from "../../src/store/types.js";
import { ChaosEnv } from "../chaos/harness.js";
import { EtcdCluster } from "../helpers/chaos-servers.js";
import { FaultProxy } from "../helpers/fault-proxy.js";
import { requireService } from "../helpers/services.js";
import { uniqueName, waitFor, within } from "../helpers/wait.js";

const missing = ChaosEnv.missing("etcd-cluster");

describe(
  "etcd: one member of three cut off",
  requireService("etcd", !missing, missing ?? ""),
  () => {
    const ttlMs = 1000;
    const retryMs = 200;
    let cluster: EtcdCluster;
    let proxies: FaultProxy[] = [];
    const stores: LeaseStore[] = [];
    before(async () => {
      cluster = new EtcdCluster();
      await within("starting a 3-member etcd cluster", 60_000, cluster.start(3));
      proxies = cluster.members.map((m) => new FaultProxy("127.0.0.1", m.client));
      for (const p of proxies) await p.start();
    });
    // Bounded: a failed case must not leave the file waiting on a store or the cluster.
    after(
      async () => {
        for (const s of stores) await s.close().catch(() => {});
        for (const p of proxies) await p.stop();
        await cluster?.stop();
      },
      { timeout: 30_000 },
    );
    const url = () => `etcd://${proxies.map((p) => `127.0.0.1:${p.port}`).join(",")}`;

    for (const cut of [0, 2]) {
      it(`member ${cut} cut for 4 ttl: the leader keeps its term, a new store answers at once, a follower takes over promptly`, async (t) => {
        const name = uniqueName("cut");
        const a = await within("open A's store", 10_000, openStore(url()));
        stores.push(a);
        const leader = createElector({ store: a, name, holderId: "A", ttlMs, retryMs });
        const demotions: string[] = [];
        leader.on("demoted", (d) => demotions.push(d.reason));
        await within("A's start()", 10_000, leader.start());
        await waitFor("A leading", () => leader.isLeader(), { timeoutMs: 5000 });
        const token = leader.term()!.token;
        let follower: Elector | undefined;
        proxies[cut]!.blackhole();
        try {
          const openAt = performance.now();
          const b = await within("open B's store during the cut", 10_000, openStore(url()));
          stores.push(b);
          const read = await within("B's read during the cut", 10_000, b.read(name));
          const openMs = Math.round(performance.now() - openAt);
          assert.equal(read?.holder, "A");
          follower = createElector({ store: b, name, holderId: "B", ttlMs, retryMs });
          await within("B's start()", 10_000, follower.start());
          // Four ttl of renewals, about a third of whose requests would go to the cut member.
          const until = performance.now() + 4 * ttlMs;
          await waitFor("four ttl", () => performance.now() >= until || demotions.length > 0, {
            timeoutMs: 10 * ttlMs,
            intervalMs: 20,
          });
          assert.deepEqual(demotions, [], "the leader lost its term while a member was cut");
          assert.equal(leader.term()?.token, token);
          const stopAt = performance.now();
          await within("A's stop()", 10_000, leader.stop());
          await waitFor("B leading", () => follower?.isLeader() === true, {
            timeoutMs: 10_000,
            intervalMs: 5,
          });
          const takeoverMs = Math.round(performance.now() - stopAt);
          t.diagnostic(
            `open + read during the cut ${openMs} ms; resign → B leads ${takeoverMs} ms`,
          );
          assert.ok(openMs < ttlMs, `opening and reading took ${openMs} ms with one member cut`);
          assert.ok(takeoverMs < ttlMs, `B led ${takeoverMs} ms after A resigned`);
        } finally {
          // Both electors stop on every path: a running one keeps the file from ever exiting.
          proxies[cut]!.heal();
          await within("A's stop() after the heal", 10_000, leader.stop());
          if (follower) await within("B's stop() after the heal", 10_000, follower.stop());
        }
      });
    }
  },
);
