import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LeaseStore } from "../../src/store/types.js";
import { loadMutant, type MutantName } from "./mutants.js";
import { loadTenure, type Tenure } from "./world.js";

/**
 * The bugs the simulator found, each replayed as a directed scenario on a
 * FakeClock (so the test does not depend on which random schedule first
 * showed it, which changes whenever the code does). Each runs on the current
 * code (must hold) and on a copy with the fix undone (must fail), so the test
 * is shown to bite. The simulator worlds that found them are listed in
 * docs/SIMULATION.md.
 */

const TTL = 1_000; // margin 100 ⇒ trust window 900, renew every 333, retry 200

/** A stream whose first run fails; the process stalls for 2 s during the 100 ms reconnect backoff. */
async function streamAfterStall(t: Tenure): Promise<string[]> {
  const clock = new t.FakeClock();
  const store = new t.MemoryStore({ clock });
  const e = t.createElector({
    store,
    name: "job",
    ttlMs: TTL,
    clock,
    holderId: "a",
    random: () => 0.5,
  });
  const t0 = clock.now();
  const bad: string[] = [];
  let runs = 0;
  e.stream({
    name: "feed",
    recovery: { strategy: "reconnect", initialDelayMs: 100, maxDelayMs: 100 },
    run: async (term, ctx) => {
      runs += 1;
      if (term.token === 1n && clock.now() >= t0 + TTL - 100) {
        bad.push(`stream run of token 1 at +${clock.now() - t0} ms, after its window (+900)`);
      }
      if (runs === 1) throw new Error("stream broke");
      await new Promise((r) => ctx.signal.addEventListener("abort", r, { once: true }));
    },
  });
  await e.start();
  await clock.advance(10); // elected at t0; run 1 failed; reconnect due at t0 + 100, renewal at t0 + 333
  assert.equal(e.term()?.token, 1n);
  clock.stall(2_000); // SIGSTOP: every due timer fires afterwards, the reconnect first
  await clock.jump(0);
  await clock.advance(50);
  await e.stop();
  return bad;
}

/** A service whose first start fails; the process stalls for 2 s during the 100 ms retry backoff. */
async function serviceRetryAfterStall(t: Tenure): Promise<string[]> {
  const clock = new t.FakeClock();
  const store = new t.MemoryStore({ clock });
  const e = t.createElector({
    store,
    name: "job",
    ttlMs: TTL,
    clock,
    holderId: "a",
    random: () => 0.5,
  });
  const t0 = clock.now();
  const bad: string[] = [];
  let starts = 0;
  e.service({
    name: "svc",
    startRetry: { attempts: 3, initialDelayMs: 100, maxDelayMs: 100, jitter: 0 },
    start: (term) => {
      starts += 1;
      if (term.token === 1n && clock.now() >= t0 + TTL - 100) {
        bad.push(`service start of token 1 at +${clock.now() - t0} ms, after its window (+900)`);
      }
      if (starts === 1) throw new Error("start failed");
      return starts;
    },
    stop: () => {},
  });
  await e.start();
  await clock.advance(10); // elected; start 1 failed; retry due at t0 + 100, renewal at t0 + 333
  assert.equal(e.term()?.token, 1n);
  assert.equal(starts, 1);
  clock.stall(2_000);
  await clock.jump(0);
  await clock.advance(50);
  await e.stop();
  return bad;
}

/** The leader loses its lease to another holder while the store starts failing acquires. */
async function backoffAfterLoss(t: Tenure): Promise<string[]> {
  const clock = new t.FakeClock();
  const mem = new t.MemoryStore({ clock });
  let failing = false;
  const attempts: number[] = [];
  const store: LeaseStore = {
    kind: "memory",
    notifies: false,
    acquire: (name, holder, ttl) => {
      if (!failing || holder !== "a") return mem.acquire(name, holder, ttl);
      attempts.push(clock.now());
      return Promise.reject(
        new t.StoreError("store down", {
          transient: true,
          kind: "connection",
          code: "ECONNREFUSED",
        }),
      );
    },
    renew: (l, ttl) => mem.renew(l, ttl),
    release: (l) => mem.release(l),
    read: (n) => mem.read(n),
    list: () => mem.list(),
    forceRelease: (n) => mem.forceRelease(n),
    putFenced: (l, k, v, o) => mem.putFenced(l, k, v, o),
    getFenced: (n, k) => mem.getFenced(n, k),
    close: () => mem.close(),
  };
  const e = t.createElector({
    store,
    name: "job",
    ttlMs: TTL,
    clock,
    holderId: "a",
    random: () => 0.5,
  });
  await e.start();
  await clock.advance(10);
  assert.equal(e.term()?.token, 1n);
  await mem.forceRelease("job");
  await mem.acquire("job", "b", TTL);
  failing = true;
  await clock.advance(600); // the renewal at +333 finds b: lost; the follower's acquires fail
  await e.stop();
  assert.ok(attempts.length >= 2, `only ${attempts.length} failing acquires`);
  const gap = attempts[1]! - attempts[0]!;
  return gap < 90 ? [`second failing acquire ${gap} ms after the first (backoff skipped)`] : [];
}

const CASES: readonly [string, MutantName, (t: Tenure) => Promise<string[]>][] = [
  [
    "a stream reconnect re-checks leadership against the clock before it runs",
    "revert-stream-clock-check",
    streamAfterStall,
  ],
  [
    "a service start retry re-checks leadership against the clock before it runs",
    "revert-service-clock-check",
    serviceRetryAfterStall,
  ],
  [
    "a follower's first failure backoff after losing its term is not skipped",
    "revert-stale-wake",
    backoffAfterLoss,
  ],
];

describe("regressions found by the simulation", () => {
  for (const [what, revert, scenario] of CASES) {
    it(what, async () => {
      assert.deepEqual(await scenario(await loadTenure()), []);
      const reverted = await scenario(await loadMutant(revert));
      assert.ok(reverted.length > 0, `the scenario does not fail with the fix undone (${revert})`);
    });
  }
});
