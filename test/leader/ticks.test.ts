import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isConfigError, type Term } from "../../src/index.js";
import { ScriptedStore } from "../helpers/stores.js";
import { deferred, setup } from "./setup.js";

describe("leader-only ticks", () => {
  it("every(ms) runs only on the leader, with the current term; a follower's tick does nothing", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const b = make("b");
    const runs: string[] = [];
    a.every(100, (t) => {
      runs.push(`a:${t.token}`);
    });
    b.every(100, (t) => {
      runs.push(`b:${t.token}`);
    });
    await a.start();
    await clock.advance(0);
    await b.start();
    await clock.advance(350);
    assert.deepEqual(runs, ["a:1", "a:1", "a:1"]);
    await stopAll();
  });

  it("F5 zombie ticks: after a stall past the deadline the due tick does nothing; ticks resume on re-election with the new token", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const runs: { token: bigint; leader: boolean }[] = [];
    a.every(100, (t) => {
      runs.push({ token: t.token, leader: a.isLeader() });
    });
    await a.start();
    await clock.advance(250);
    assert.equal(runs.length, 2);
    await clock.jump(5000); // the event loop was stalled (SIGSTOP, GC…) far past the trust window
    assert.equal(runs.length, 2, "the tick that fell due during the stall did nothing");
    assert.equal(r.demoted[0]?.reason, "expired");
    assert.ok(a.leaderWork.stats().ticks[0]!.notLeader >= 1);
    await clock.advance(1000);
    assert.ok(r.elected.length >= 2, "re-elected");
    const newToken = r.elected.at(-1)!.token;
    assert.ok(newToken > 1n);
    const after = runs.slice(2);
    assert.ok(after.length > 0, "ticks resumed by themselves");
    assert.ok(after.every((x) => x.token === newToken && x.leader));
    await stopAll();
  });

  it("F5: a demoted process's timers do nothing while the new leader's run", async () => {
    const { clock, make, record, steal, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const runs: bigint[] = [];
    a.every(50, (t) => {
      runs.push(t.token);
    });
    await a.start();
    await clock.advance(200);
    const before = runs.length;
    assert.ok(before >= 3);
    await steal();
    await clock.advance(400); // next renew finds the lease lost
    assert.equal(r.demoted[0]?.reason, "lost");
    const atDemotion = runs.length;
    await clock.advance(5000);
    assert.equal(runs.length, atDemotion, "no tick runs after demotion");
    assert.ok(runs.every((t) => t === 1n));
    await stopAll();
  });

  it("no overlap: a tick still running when the next is due is skipped and counted", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const gate = deferred();
    let started = 0;
    a.every(100, async () => {
      started += 1;
      if (started === 1) await gate.promise;
    });
    await a.start();
    await clock.advance(350);
    assert.equal(started, 1);
    assert.equal(a.leaderWork.stats().ticks[0]!.skips, 2);
    gate.resolve();
    await clock.advance(100);
    assert.equal(started, 2);
    await stopAll();
  });

  it("registered after election runs at once; the unregister function stops it; errors are counted, not thrown", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    await a.start();
    await clock.advance(0);
    let n = 0;
    const off = a.every(
      100,
      () => {
        n += 1;
        throw new Error("tick boom");
      },
      { name: "boom", immediate: true },
    );
    await clock.advance(0);
    assert.equal(n, 1);
    await clock.advance(200);
    assert.equal(n, 3);
    off();
    await clock.advance(500);
    assert.equal(n, 3);
    assert.ok(r.errors.some((e) => e.message === "tick boom"));
    await stopAll();
  });

  it("cron fires on the wall clock in the given time zone", async () => {
    // 13:59:00Z on 1 Jan 2026; 09:00 in New York (EST, UTC−5) is 14:00Z.
    const { clock, make, stopAll } = setup({ wallStart: Date.UTC(2026, 0, 1, 13, 59, 0) });
    const a = make("a", { ttlMs: 60_000 });
    const fired: string[] = [];
    // Recorded here, asserted below: an assertion inside the tick would only reach the `error` event.
    const lateness: number[] = [];
    a.cron(
      "0 9 * * *",
      (_t, info) => {
        fired.push(new Date(info.scheduledAt).toISOString());
        lateness.push(clock.wallNow() - info.scheduledAt);
      },
      { timezone: "America/New_York" },
    );
    const every2s: number[] = [];
    a.cron("*/2 * * * * *", (_t, info) => {
      every2s.push(info.scheduledAt);
    });
    await a.start();
    await clock.advance(59_000);
    assert.deepEqual(fired, []);
    await clock.advance(2_000);
    assert.deepEqual(fired, ["2026-01-01T14:00:00.000Z"]);
    assert.deepEqual(lateness, [0], "ran at its scheduled wall time");
    assert.ok(every2s.length >= 29);
    assert.ok(every2s.every((t, i) => t % 2000 === 0 && (i === 0 || t - every2s[i - 1]! === 2000)));
    await stopAll();
  });

  it("claim: each fire time runs exactly once across the fleet, across a leadership change, with missed fire times caught up once", async () => {
    const { clock, mem, make, record, stopAll } = setup({ wallStart: Date.UTC(2026, 0, 1) });
    const sa = new ScriptedStore(mem, { expect: ["getFenced", "putFenced"] });
    // ttl 3 s: the failover gap spans fire times that nobody ran
    const a = make("a", { store: sa, ttlMs: 3000 });
    const b = make("b", { ttlMs: 3000 });
    const ra = record(a);
    const rb = record(b);
    const runs: { holder: string; token: bigint; at: number; catchUp: boolean }[] = [];
    for (const [e, holder] of [
      [a, "a"],
      [b, "b"],
    ] as const) {
      e.cron(
        "* * * * * *",
        (t: Term, info) => {
          runs.push({ holder, token: t.token, at: info.scheduledAt, catchUp: info.catchUp });
        },
        { name: "beat", claim: true, catchUpLimit: 5 },
      );
    }
    await a.start();
    await clock.advance(0);
    await b.start();
    await clock.advance(3500);
    assert.equal(runs.length, 3);
    assert.ok(runs.every((x) => x.holder === "a"));
    // a can no longer reach the store: it demotes at its deadline, b takes over at expiry
    sa.fail("renew", "transient");
    sa.fail("acquire", "transient");
    await clock.advance(4000);
    assert.equal(ra.demoted[0]?.reason, "expired");
    assert.equal(rb.elected.length, 1);
    sa.heal();
    await clock.advance(3000);
    const ats = runs.map((x) => x.at);
    assert.deepEqual([...new Set(ats)], ats, "no fire time ran twice");
    for (let i = 1; i < ats.length; i++)
      assert.equal(ats[i]! - ats[i - 1]!, 1000, "no fire time was lost");
    assert.ok(
      runs.some((x) => x.holder === "b" && x.catchUp),
      "b caught up what was missed during the failover",
    );
    assert.ok(runs.filter((x) => x.holder === "b").every((x) => x.token === rb.elected[0]!.token));
    await stopAll();
  });

  it("claim: a stale term that still trusts its lease cannot claim a fire time (fenced in the store)", async () => {
    const { clock, mem, make, record, steal, stopAll } = setup({ wallStart: Date.UTC(2026, 0, 1) });
    // No notifications, ttl 60 s (renewal every 20 s): after the theft below, a keeps
    // trusting its term, and only the store's fence on the claim can stop its ticks.
    const quiet = new ScriptedStore(mem, { expect: ["getFenced", "putFenced"] });
    quiet.watch = undefined;
    const a = make("a", { store: quiet, ttlMs: 60_000 });
    const r = record(a);
    const runs: number[] = [];
    a.cron(
      "* * * * * *",
      (_t, info) => {
        runs.push(info.scheduledAt);
      },
      { name: "beat", claim: true },
    );
    await a.start();
    await clock.advance(0);
    await clock.advance(1500);
    const before = runs.length;
    assert.ok(before >= 1, "claims succeed while a holds the lease");
    await steal();
    await clock.advance(3000); // three fire times come due under the stale term
    assert.ok(a.isLeader(), "a still trusts its term");
    assert.equal(r.demoted.length, 0);
    assert.equal(runs.length, before, "the stale term ran no fire time");
    assert.deepEqual(r.errors, []);
    await stopAll();
  });

  it("rejects bad schedules with a ConfigError naming the field", () => {
    const { make } = setup();
    const a = make("a");
    assert.throws(
      () => a.every(0, () => {}),
      (e) => isConfigError(e) && e.field === "ms",
    );
    assert.throws(
      () => a.cron("not a cron", () => {}),
      (e) => isConfigError(e) && e.field === "cron",
    );
    assert.throws(
      () => a.cron("* * * * *", () => {}, { timezone: "Mars/Olympus" }),
      (e) => isConfigError(e) && e.field === "timezone",
    );
    assert.throws(
      () => a.cron("* * * * *", () => {}, { claim: true }),
      (e) => isConfigError(e) && e.field === "name",
    );
  });
});
