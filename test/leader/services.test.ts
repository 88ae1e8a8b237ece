import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isTimeoutError, type Term } from "../../src/index.js";
import { deferred, setup } from "./setup.js";

describe("leader services", () => {
  it("F4: a start that keeps failing is retried after 1, 2, 4, 8 s, then the leader resigns its term", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const attempts: { at: number; token: bigint }[] = [];
    a.service({
      name: "maintainer",
      start: (term) => {
        attempts.push({ at: clock.now(), token: term.token });
        throw new Error("ECONNREFUSED");
      },
      stop: () => {},
    });
    await a.start();
    await clock.advance(0);
    assert.equal(r.elected.length, 1);
    const t0 = attempts[0]!.at;
    await clock.advance(1000);
    assert.match(
      a.health().reason ?? "",
      /service "maintainer" is not running \(start attempt 2 of 5\)/,
    );
    assert.equal(a.health().healthy, false);
    await clock.advance(14_000);
    const first = attempts.filter((x) => x.token === 1n).map((x) => x.at - t0);
    assert.deepEqual(first, [0, 1000, 3000, 7000, 15000]);
    assert.equal(r.demoted[0]?.reason, "resigned");
    assert.equal(r.demoted[0]?.token, 1n);
    // after the cooldown it campaigns again and (being alone) tries with a new term
    await clock.advance(1000);
    assert.equal(r.elected.length, 2);
    assert.equal(attempts.at(-1)!.token, r.elected[1]!.token);
    await stopAll();
  });

  it("F4: a transient start failure is retried and the service then runs; health is fine again", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    let calls = 0;
    a.service({
      name: "svc",
      start: () => {
        calls += 1;
        if (calls < 3) throw new Error("transient");
        return "handle";
      },
      stop: () => {},
    });
    await a.start();
    await clock.advance(0);
    assert.equal(a.health().healthy, true, "first attempt in progress is within the grace");
    await clock.advance(3000);
    assert.equal(calls, 3);
    assert.deepEqual(
      a.leaderWork.stats().services.map((s) => s.state),
      ["running"],
    );
    assert.equal(a.health().healthy, true);
    assert.equal(r.demoted.length, 0);
    await stopAll();
  });

  it("F4 stale term: a start that returns after its term ended is stopped and never touches the newer term's service", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const firstStart = deferred<{ id: string; closed: boolean }>();
    const starts: bigint[] = [];
    const stops: { id: string; token: bigint; reason: string }[] = [];
    a.service<{ id: string; closed: boolean }>({
      name: "server",
      start: (term) => {
        starts.push(term.token);
        if (term.token === 1n) return firstStart.promise; // hangs until the test lets it return
        return { id: `t${term.token}`, closed: false };
      },
      stop: (reason, { term, value }) => {
        value.closed = true;
        stops.push({ id: value.id, token: term.token, reason });
      },
    });
    await a.start();
    await clock.advance(0);
    const term1 = r.elected[0]!;
    const resigning = a.resign();
    await clock.advance(0);
    assert.equal(await resigning, true);
    assert.equal(term1.signal.aborted, true);
    await clock.advance(1000); // cooldown, then a new term
    assert.equal(r.elected.length, 2);
    const term2 = r.elected[1]!;
    assert.deepEqual(starts, [1n, term2.token]);
    assert.equal(a.leaderWork.stats().services[0]?.state, "running");
    // now the old term's start finally returns
    const stale = { id: "t1", closed: false };
    firstStart.resolve(stale);
    await clock.advance(0);
    assert.equal(stale.closed, true, "what the stale attempt started is stopped");
    assert.deepEqual(stops, [{ id: "t1", token: 1n, reason: "resigned" }]);
    assert.equal(
      a.leaderWork.stats().services[0]?.state,
      "running",
      "the newer term's service is untouched",
    );
    assert.equal(a.term(), term2);
    assert.equal(a.health().healthy, true);
    await stopAll();
    assert.deepEqual(
      stops.map((s) => s.id),
      ["t1", `t${term2.token}`],
    );
  });

  it("stops every started service exactly once, in reverse start order, with the reason; errors and hangs are bounded and reported", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const log: string[] = [];
    const mk = (name: string, stop: () => unknown) =>
      a.service({
        name,
        start: (t: Term) => {
          log.push(`start:${name}:${t.token}`);
        },
        stop: (reason) => {
          log.push(`stop:${name}:${reason}`);
          return stop();
        },
        stopTimeoutMs: 500,
      });
    mk("db", () => {});
    mk("cache", () => {
      throw new Error("stop failed");
    });
    mk("api", () => new Promise(() => {})); // hangs
    await a.start();
    await clock.advance(0);
    assert.deepEqual(log, ["start:db:1", "start:cache:1", "start:api:1"]);
    const stopping = a.stop();
    await clock.advance(0);
    await clock.advance(500);
    await stopping;
    assert.deepEqual(log.slice(3), ["stop:api:stopped", "stop:cache:stopped", "stop:db:stopped"]);
    assert.ok(r.errors.some(isTimeoutError), "the hanging stop is reported");
    assert.ok(r.errors.some((e) => e.message === "stop failed"));
    await stopAll();
    assert.equal(log.length, 6, "nothing is stopped twice");
  });

  it("a lost lease stops services with reason `lost`; a service registered while leading starts at once", async () => {
    const { clock, make, steal, stopAll } = setup();
    const a = make("a");
    const log: string[] = [];
    await a.start();
    await clock.advance(0);
    assert.equal(a.isLeader(), true);
    const off = a.service({
      name: "late",
      start: (t) => {
        log.push(`start:${t.token}`);
      },
      stop: (reason) => {
        log.push(`stop:${reason}`);
      },
    });
    await clock.advance(0);
    assert.deepEqual(log, ["start:1"]);
    await steal();
    await clock.advance(400);
    assert.equal(a.isLeader(), false);
    assert.deepEqual(log, ["start:1", "stop:lost"]);
    off();
    await stopAll();
    assert.deepEqual(log, ["start:1", "stop:lost"]);
  });

  it("rejects bad definitions with a ConfigError naming the field", () => {
    const { make } = setup();
    const a = make("a");
    assert.throws(() => a.service({ name: "", start: () => {}, stop: () => {} }), /service\.name/);
    assert.throws(
      () => a.service({ name: "x", start: () => {}, stop: () => {}, startRetry: { attempts: 0 } }),
      /service\.startRetry\.attempts: must be an integer from 1 to 1000/,
    );
    a.service({ name: "x", start: () => {}, stop: () => {} });
    assert.throws(
      () => a.service({ name: "x", start: () => {}, stop: () => {} }),
      /already registered/,
    );
  });
});
