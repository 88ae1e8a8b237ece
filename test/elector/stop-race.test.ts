/**
 * stop() that lands while the campaign's winning acquire is being answered
 * (issue 19, chaos `group:sqlite:stop-in-tx`: a group handed a partition over
 * while its elector's acquire came back). The campaign had looked at
 * `stopping` already; the leader phase began a few microtasks later without
 * looking again: the elector led and renewed a term nobody would end, and
 * stop() waited for it forever. In the group, the partition stayed "being
 * handed over" and owned: the fleet never balanced (owners of 17 and 15, or 23
 * and 9, of 64 partitions, 13.6 s after the heal).
 *
 * Real SQLite file store. stop() is called K microtask hops after the store
 * answers the acquire, for every K up to past the leader phase's start: each
 * must resolve, with the lease released and nobody leading.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { createElector, type LeaseStore, openStore } from "../../src/index.js";
import { uniqueName, waitFor, within } from "../helpers/wait.js";

const tmp = mkdtempSync(join(tmpdir(), "tenure-stop-race-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const url = `sqlite:${join(tmp, "leases.db")}`;

/** `store` whose next acquire answer calls `then` `hops` microtasks after the store answered. */
function onAnswer(store: LeaseStore, hops: number, then: () => void): LeaseStore {
  let armed = true;
  const wrap =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    (...a: A): Promise<R> => {
      const p = fn(...a);
      if (armed) {
        armed = false;
        void p.then(() => {
          let n = hops;
          const hop = () => {
            if (n-- > 0) queueMicrotask(hop);
            else then();
          };
          hop();
        });
      }
      return p;
    };
  return new Proxy(store, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t) as unknown;
      if (typeof v !== "function") return v;
      const bound = (v as (...a: unknown[]) => unknown).bind(t);
      if (prop === "acquire" || prop === "acquireMany")
        return wrap(bound as (...a: unknown[]) => Promise<unknown>);
      return bound;
    },
  });
}

/** `store` whose renewals are made in the store but never answered once `hang.on`. */
function unansweredRenewals(store: LeaseStore, hang: { on: boolean }): LeaseStore {
  return new Proxy(store, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t) as unknown;
      if (typeof v !== "function") return v;
      const bound = (v as (...a: unknown[]) => unknown).bind(t);
      if (prop === "renew" || prop === "renewMany")
        return (...a: unknown[]) => {
          const p = bound(...a) as Promise<unknown>;
          return hang.on ? new Promise<never>(() => {}) : p;
        };
      return bound;
    },
  });
}

describe("elector: stop() after a term expired unreleased", () => {
  it("releases the term the store still holds: the next elector of the holder gets a new token (SQLite)", async () => {
    // A group hands a partition over by stopping its elector, then campaigns for it again
    // with a new elector of the same holder id. A term that expired in the elector (its
    // renewal made in the store, the answer not back in time) stayed in the store; the new
    // elector was answered that same term and led it again: one token, two terms
    // (chaos group:sqlite:stop-in-tx:1233320761 and group:redis:pause-short:1479544978,
    // "elected with token 4, not larger than token 4 elected before it", same pid).
    const store = await openStore(url);
    try {
      const name = uniqueName("stop-ended");
      const hang = { on: false };
      const a = createElector({
        store: unansweredRenewals(store, hang),
        name,
        ttlMs: 3000,
        holderId: "h",
      });
      a.on("error", () => {});
      // Stopped as the term expires, as a group hands the partition over: before the
      // elector's own campaign could find the term in the store and release it.
      const expired = new Promise<{ token: bigint; stopped: Promise<void> }>((res) =>
        a.on("demoted", (d) => {
          if (d.reason === "expired") res({ token: d.token, stopped: a.stop() });
        }),
      );
      hang.on = true;
      await a.start();
      const { token: first, stopped } = await within("the first term to expire", 10_000, expired);
      await within("a.stop()", 5000, stopped);
      const b = createElector({ store, name, ttlMs: 3000, holderId: "h" });
      b.on("error", () => {});
      await b.start();
      try {
        const term = await within("b elected", 5000, b.waitForLeadership());
        assert.ok(
          term.token > first,
          `the next term of the holder has token ${term.token}, not larger than the ended term's ${first}`,
        );
      } finally {
        await b.stop();
      }
    } finally {
      await store.close();
    }
  });
});

describe("elector: stop() while the winning acquire is being answered", () => {
  it("resolves at every microtask of the win, the lease released and nobody leading (SQLite)", async () => {
    const late: number[] = [];
    for (let k = 0; k <= 40; k++) {
      const store = await openStore(url);
      const name = uniqueName("stop-race");
      let stopped: Promise<"stopped"> | null = null;
      const e = createElector({
        store: onAnswer(store, k, () => {
          stopped = e.stop().then(() => "stopped" as const);
        }),
        name,
        ttlMs: 2000,
        holderId: "a",
      });
      e.on("error", () => {});
      await e.start();
      // (Wrapped: waitFor would await the promise itself.)
      const { stop } = await waitFor(`stop() of hop ${k}`, () => stopped && { stop: stopped }, {
        timeoutMs: 5000,
      });
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([
        stop,
        new Promise<"hung">((res) => {
          timer = setTimeout(() => res("hung"), 3000);
        }),
      ]);
      clearTimeout(timer);
      if (r === "hung") {
        late.push(k);
        // Let the hung elector end: its renewals fail once the store is closed.
        await store.close();
        await stop;
        continue;
      }
      assert.equal(e.isLeader(), false, `hop ${k}: leading after stop()`);
      assert.equal(await store.read(name), null, `hop ${k}: the lease is not released`);
      await store.close();
    }
    assert.deepEqual(late, [], `stop() did not resolve when called at hops ${late.join(", ")}`);
  });
});
