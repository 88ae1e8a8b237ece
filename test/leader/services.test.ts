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
    assert.equal(a.health().healthy, false, "attempt 1 failed: down while waiting for attempt 2");
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

  it("F4 health: a service waiting for its next start attempt is reported down at once, not after the start grace", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    let calls = 0;
    a.service({
      name: "api",
      start: () => {
        calls += 1;
        if (calls === 1) throw new Error("ECONNREFUSED");
      },
      stop: () => {},
      startRetry: { initialDelayMs: 30_000, jitter: 0 },
    });
    await a.start();
    await clock.advance(0);
    assert.equal(r.elected.length, 1);
    assert.equal(calls, 1);
    await clock.advance(300);
    const h = a.health();
    assert.equal(h.healthy, false, "the service is down during its first backoff");
    assert.match(h.reason ?? "", /service "api" is not running \(start attempt 1 of 5\)/);
    assert.deepEqual(
      a.leaderWork.stats().services.map((s) => s.state),
      ["retrying"],
    );
    await clock.advance(29_700);
    assert.equal(calls, 2);
    assert.equal(a.health().healthy, true, "running after the second attempt");
    await stopAll();
  });

  it("F4 stale term (rule 4): the next term waits for a slow start of the ended term to return and be stopped before it starts that service", async () => {
    const { clock, make, mem, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const firstStart = deferred<{ id: string; closed: boolean }>();
    const log: string[] = [];
    let open = 0;
    let maxOpen = 0;
    a.service<{ id: string; closed: boolean }>({
      name: "server",
      start: async (term) => {
        log.push(`start:${term.token}`);
        const v =
          term.token === 1n
            ? await firstStart.promise // hangs until the test lets it return
            : { id: `t${term.token}`, closed: false };
        open += 1;
        maxOpen = Math.max(maxOpen, open);
        return v;
      },
      stop: (reason, { term, value }) => {
        value.closed = true;
        open -= 1;
        log.push(`stop:${value.id}:${term.token}:${reason}`);
      },
    });
    await a.start();
    await clock.advance(0);
    const term1 = r.elected[0]!;
    let resigned = false;
    const resigning = a.resign().then((v) => {
      resigned = v;
    });
    await clock.advance(0);
    assert.equal(term1.signal.aborted, true, "the term ends at once");
    await clock.advance(500);
    assert.equal((await mem.read("job"))?.holder, "a", "the lease is not released before it stops");
    await clock.advance(1000);
    assert.equal(resigned, false, "resign waits for the slow start (bounded by stopTimeoutMs)");
    // the old term's start finally returns, 1.5 s later
    const stale = { id: "t1", closed: false };
    firstStart.resolve(stale);
    await clock.advance(0);
    await resigning;
    assert.equal(resigned, true);
    assert.equal(stale.closed, true, "what the stale attempt started is stopped");
    await clock.advance(1000); // cooldown, then a new term
    assert.equal(r.elected.length, 2);
    const term2 = r.elected[1]!;
    assert.deepEqual(log, ["start:1", "stop:t1:1:resigned", `start:${term2.token}`]);
    assert.equal(maxOpen, 1, "never two instances at once");
    assert.equal(a.leaderWork.stats().services[0]?.state, "running");
    await stopAll();
    assert.equal(log.at(-1), `stop:t${term2.token}:${term2.token}:stopped`);
  });

  it("F4 stale term: a start that outlives stopTimeoutMs is reported; when it returns it is stopped and never touches the newer term's service", async () => {
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
      stopTimeoutMs: 500,
    });
    await a.start();
    await clock.advance(0);
    const term1 = r.elected[0]!;
    const resigning = a.resign();
    await clock.advance(0);
    assert.equal(term1.signal.aborted, true);
    await clock.advance(500);
    assert.equal(await resigning, true);
    assert.ok(
      r.errors.some(
        (e) => isTimeoutError(e) && /did not return and stop within 500 ms/.test(e.message),
      ),
      "the abandoned wait is reported",
    );
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
