import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { createElector, type Elector } from "../../src/elector/index.js";
import { openStore } from "../../src/open.js";
import type { LeaseStore } from "../../src/store/types.js";
import { EtcdCluster } from "../helpers/chaos-servers.js";
import { FaultProxy } from "../helpers/fault-proxy.js";
import { requireService } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";
import { ChaosEnv, DEFAULT_TIMING } from "./harness.js";
import { replayClean } from "./profile.js";
import { describeReplays } from "./regressions.js";

/**
 * Regression seeds of etcd under latency (issue 19). Each replays one
 * episode of the long profile exactly (`--replay etcd:latency:SEED`).
 */
describeReplays("chaos regressions: etcd under latency", "etcd", (env) => {
  it("etcd:latency:557677842 (+152 ms each way for 2.1 s, the leader renewing through it): all invariants hold", async (t) => {
    // With a renewal in one round trip the leader usually keeps its term
    // through this latency (with two it lost it in all 100 latency episodes
    // measured). Whether it does is timing: in one full-suite run on a
    // loaded machine it lost it. So it is reported, not asserted; the store
    // test "a renewal is one round trip" asserts it on a quieter path. This
    // episode checks the invariants while a leader renews across the fault
    // and its heal.
    await replayClean(env, t, "etcd:latency:557677842");
  });

  it("etcd:latency:1537198409 (the issue's seed, +248 ms each way): all invariants hold", async (t) => {
    await replayClean(env, t, "etcd:latency:1537198409");
  });

  it("etcd:blackhole:1050919443 (a batch acquire answered after the black hole healed): no trust overlap, no write refused while trusted", async (t) => {
    // The batched acquire's slow path (a key held by the caller's own holder)
    // took the single acquire with a new sequence number, so an acquire
    // answered late counted as the newest and took over the holder's newer,
    // live term: another candidate was then elected while it still trusted
    // it (34–124 ms of trust overlap in about half the replays). Two
    // replays, so the old defect fails this test about three times in four.
    // Fixed first with per-name sequence numbers; now by the store contract
    // (every store): an acquire by the live holder answers its term, so
    // nothing of the holder's is ever taken over.
    for (let k = 0; k < 2; k++) await replayClean(env, t, "etcd:blackhole:1050919443");
  });
});

const missing = ChaosEnv.missing("etcd");

/**
 * Start-up under latency (issue 19, "known open liveness"): processes that
 * open the store, set up the watch and campaign while every member of a
 * 3-member cluster is +150–300 ms away each way must, once the link heals,
 * agree on one leader within the checker's recovery bound (ttl + retry +
 * tick + 250 ms). Three in-process electors, each with its own store (its own
 * gRPC channels, session and keep-alive stream), through one fault proxy per
 * member.
 */
describe(
  "etcd: start-up under latency",
  requireService("chaos etcd", !missing, missing ?? ""),
  () => {
    const { ttlMs, retryMs, tickMs } = DEFAULT_TIMING;
    const bound = ttlMs + retryMs + tickMs + 250;
    let cluster: EtcdCluster;
    let proxies: FaultProxy[] = [];
    before(async () => {
      cluster = new EtcdCluster();
      await cluster.start(3);
      proxies = cluster.members.map((m) => new FaultProxy("127.0.0.1", m.client));
      for (const p of proxies) await p.start();
    });
    after(async () => {
      for (const p of proxies) await p.stop();
      await cluster?.stop();
    });

    for (const [ms, holdMs] of [
      [160, 2500],
      [300, 3500],
    ] as const) {
      it(`started at +${ms} ms each way, healed after ${holdMs} ms: one leader named by all within ${bound} ms`, async (t) => {
        const url = `etcd://${proxies.map((p) => `127.0.0.1:${p.port}`).join(",")}`;
        const name = uniqueName("startlat");
        for (const p of proxies) p.latency(ms);
        const fleet: { store: LeaseStore; elector: Elector }[] = [];
        const starting = [0, 1, 2].map(async (i) => {
          const store = await openStore(url);
          const elector = createElector({ store, name, holderId: `c${i}`, ttlMs, retryMs });
          fleet.push({ store, elector });
          await elector.start();
        });
        try {
          await sleep(holdMs); // the fault's length
          for (const p of proxies) p.heal();
          const healAt = performance.now();
          await Promise.all(starting);
          const agreed = () => {
            const leaders = fleet.filter((f) => f.elector.isLeader());
            if (fleet.length < 3 || leaders.length !== 1) return false;
            const holder = leaders[0]!.elector.term()!.holder;
            return fleet.every((f) => f.elector.leader()?.holder === holder);
          };
          await waitFor("one leader named by every elector", agreed, {
            timeoutMs: 10_000,
            intervalMs: 5,
          });
          const tookMs = Math.round(performance.now() - healAt);
          t.diagnostic(`heal → agreement ${tookMs} ms (bound ${bound} ms)`);
          assert.ok(tookMs <= bound, `agreement ${tookMs} ms after the heal, bound ${bound} ms`);
        } finally {
          for (const p of proxies) p.heal();
          await Promise.allSettled(starting);
          for (const f of fleet) {
            await f.elector.stop();
            await f.store.close();
          }
        }
      });
    }
  },
);
