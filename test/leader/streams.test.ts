import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isConfigError, isFencedError } from "../../src/index.js";
import { fencedCheckpoint, RECOVERY_DEFAULTS, strategyFromEnv } from "../../src/leader/index.js";
import { ScriptedStore } from "../helpers/stores.js";
import { deferred, setup } from "./setup.js";

describe("leader-held streams", () => {
  it("F2: a stream that dies is restarted with backoff (1, 2, 4 s) and resumes from its last checkpoint; healthy() resets the backoff", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const runs: { at: number; resumedFrom: string | null; attempt: number }[] = [];
    let lsn = 0;
    a.stream({
      name: "replication",
      run: async (_term, { checkpoint, healthy, attempt }) => {
        const from = await checkpoint.load();
        runs.push({ at: clock.now(), resumedFrom: from, attempt });
        lsn += 10;
        await checkpoint.save(String(lsn));
        if (runs.length === 4) healthy();
        throw new Error("connection terminated: database failover");
      },
    });
    await a.start();
    await clock.advance(0);
    await clock.advance(8000);
    const t0 = runs[0]!.at;
    assert.deepEqual(
      runs.map((r) => r.at - t0),
      [0, 1000, 3000, 7000, 8000],
      "1 s, 2 s, 4 s, then back to 1 s after healthy()",
    );
    assert.deepEqual(
      runs.map((r) => r.resumedFrom),
      [null, "10", "20", "30", "40"],
    );
    assert.deepEqual(
      runs.map((r) => r.attempt),
      [1, 2, 3, 4, 2],
    );
    assert.equal(a.leaderWork.stats().streams[0]!.reconnects, 4);
    assert.equal(a.health().healthy, true, "reconnecting is not stuck");
    await stopAll();
  });

  it("F2: the exit strategy does not fire when the election is lost (not an error)", async () => {
    const { clock, make, record, steal, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const exits: number[] = [];
    let runs = 0;
    a.stream({
      name: "replication",
      recovery: { strategy: "exit", exitDelayMs: 5000, exitCode: 3 },
      exit: (code) => exits.push(code),
      run: (_term, { signal }) =>
        new Promise((_, reject) => {
          runs += 1;
          signal.addEventListener("abort", () => reject(signal.reason), { once: true });
        }),
    });
    await a.start();
    await clock.advance(0);
    assert.equal(runs, 1);
    await steal();
    await clock.advance(400);
    assert.equal(r.demoted[0]?.reason, "lost");
    await clock.advance(20_000);
    assert.deepEqual(exits, [], "no exit on election loss");
    assert.equal(runs, 1, "and no restart loop");
    await stopAll();
    assert.deepEqual(exits, []);
  });

  it("F2: the stream's own checkpoint write fenced off after a takeover ends the term (`lost`); recovery (exit) never sees it", async () => {
    const { clock, mem, make, record, steal, stopAll } = setup();
    // No notifications: only the fenced write can tell the elector before its renewal.
    const a = make("a", {
      store: new ScriptedStore(mem, { quiet: true, expect: ["getFenced", "putFenced"] }),
    });
    const r = record(a);
    const exits: number[] = [];
    const go = deferred();
    a.stream({
      name: "replication",
      recovery: { strategy: "exit", exitDelayMs: 50, exitCode: 7 },
      exit: (code) => exits.push(code),
      run: async (_term, { checkpoint }) => {
        await checkpoint.save("1");
        await go.promise;
        await checkpoint.save("2"); // fenced: the lease moved on
      },
    });
    await a.start();
    await clock.advance(0);
    const t0 = clock.now();
    await clock.advance(10);
    await steal();
    go.resolve();
    await clock.advance(0);
    assert.deepEqual(
      r.demoted.map((d) => [d.reason, d.token]),
      [["lost", 1n]],
      "the fenced write ended the term at once",
    );
    assert.ok(clock.now() - t0 < 333, "before the renewal due at 333 ms");
    await clock.advance(60);
    assert.deepEqual(exits, [], "no exit on a lost election");
    await clock.advance(20_000);
    assert.deepEqual(exits, []);
    assert.equal(a.leaderWork.stats().streams[0]!.failures, 0, "not counted as a failure");
    assert.ok(!r.errors.some(isFencedError), "not reported as an error");
    await stopAll();
  });

  it("F2: the exit strategy exits with its code after the flush delay when the stream fails while leading", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const exits: { code: number; at: number }[] = [];
    let failedAt = 0;
    a.stream({
      name: "replication",
      recovery: strategyFromEnv("REPL", { REPL_ERROR_STRATEGY: "exit", REPL_EXIT_CODE: "75" }),
      exit: (code) => exits.push({ code, at: clock.now() }),
      run: () => {
        failedAt = clock.now();
        throw new Error("slot dropped");
      },
    });
    await a.start();
    await clock.advance(4999);
    assert.deepEqual(exits, []);
    assert.match(a.health().reason ?? "", /stream "replication" failed; process exiting/);
    await clock.advance(1);
    assert.deepEqual(exits, [{ code: 75, at: failedAt + RECOVERY_DEFAULTS.exitDelayMs }]);
    await stopAll();
  });

  it("shutdown cancels a pending reconnect; the log strategy leaves the stream stopped and reports it", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    let reconnectRuns = 0;
    let logRuns = 0;
    a.stream({
      name: "r",
      recovery: { initialDelayMs: 2000 },
      run: () => {
        reconnectRuns += 1;
        throw new Error("down");
      },
    });
    a.stream({
      name: "l",
      recovery: { strategy: "log" },
      run: () => {
        logRuns += 1;
        throw new Error("down");
      },
    });
    await a.start();
    await clock.advance(0);
    assert.equal(reconnectRuns, 1);
    assert.match(a.health().reason ?? "", /stream "l" failed and is not running/);
    const stopping = a.stop();
    await clock.advance(0);
    await stopping;
    await clock.advance(10_000);
    assert.equal(reconnectRuns, 1, "the pending reconnect was cancelled");
    assert.equal(logRuns, 1);
    assert.equal(clock.pending(), 0, "no timer left behind");
    await stopAll();
  });

  it("a reconnect that throws schedules the next; fail() signals an error without rejecting; maxAttempts gives up", async () => {
    const { clock, make, stopAll } = setup();
    const a = make("a");
    const calls: number[] = [];
    // Recorded here, asserted below: a throw inside run() only becomes a reconnect.
    const abortedAtAttempt: boolean[] = [];
    a.stream({
      name: "events",
      recovery: { strategy: "reconnect", initialDelayMs: 100, maxDelayMs: 150, maxAttempts: 3 },
      run: (_term, { fail, signal }) => {
        calls.push(clock.now());
        abortedAtAttempt.push(signal.aborted);
        if (calls.length === 1) {
          // event-based client: report the error, never settle
          queueMicrotask(() => fail(new Error("socket error")));
          return new Promise(() => {});
        }
        throw new Error("still down"); // synchronous throw from the reconnect attempt
      },
    });
    await a.start();
    await clock.advance(0);
    await clock.advance(2000);
    const t0 = calls[0]!;
    assert.deepEqual(
      calls.map((c) => c - t0),
      [0, 100, 250, 400],
    );
    assert.deepEqual(
      abortedAtAttempt,
      [false, false, false, false],
      "each attempt got a live signal",
    );
    assert.equal(a.leaderWork.stats().streams[0]!.state, "failed");
    assert.match(a.health().reason ?? "", /stream "events" failed/);
    await stopAll();
  });

  it("a stream starts again on re-election and resumes from the checkpoint the last term acknowledged", async () => {
    const { clock, make, record, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    const seen: (string | null)[] = [];
    const gate = deferred();
    a.stream({
      name: "s",
      run: async (term, { checkpoint, signal }) => {
        seen.push(await checkpoint.load());
        await checkpoint.save(`t${term.token}`);
        await Promise.race([
          gate.promise,
          new Promise((res) => signal.addEventListener("abort", res)),
        ]);
      },
    });
    await a.start();
    await clock.advance(0);
    await a.resign();
    await clock.advance(1000);
    assert.equal(r.elected.length, 2);
    assert.deepEqual(seen, [null, "t1"]);
    await stopAll();
  });
});

describe("fenced checkpoints", () => {
  it("a stale term can never move a checkpoint: save throws FencedError and the value stays", async () => {
    const { clock, mem, make, record, steal, stopAll } = setup();
    const a = make("a");
    const r = record(a);
    await a.start();
    await clock.advance(0);
    const term1 = r.elected[0]!;
    const cp1 = fencedCheckpoint(mem, term1, "replication");
    await cp1.save("0/100");
    assert.equal(await cp1.load(), "0/100");
    const lease2 = await steal("b");
    const term2 = { ...lease2, holder: "b", signal: new AbortController().signal };
    const cp2 = fencedCheckpoint(mem, term2, "replication");
    await cp2.save("0/200");
    await assert.rejects(cp1.save("0/150"), (e) => {
      assert.ok(isFencedError(e));
      assert.equal(e.token, term1.token);
      assert.equal(e.currentToken, lease2.token);
      return true;
    });
    assert.equal(await cp1.load(), "0/200");
    assert.equal((await mem.getFenced("job", "checkpoint:replication"))?.token, lease2.token);
    await stopAll();
  });
});

describe("strategyFromEnv", () => {
  it("reads and defaults every variable", () => {
    assert.deepEqual(strategyFromEnv("REPL", {}), {
      strategy: "reconnect",
      initialDelayMs: 1000,
      maxDelayMs: 60_000,
      maxAttempts: 0,
    });
    assert.deepEqual(
      strategyFromEnv("REPL", {
        REPL_ERROR_STRATEGY: "reconnect",
        REPL_RECONNECT_INITIAL_DELAY_MS: "500",
        REPL_RECONNECT_MAX_DELAY_MS: "8000",
        REPL_RECONNECT_MAX_ATTEMPTS: "7",
      }),
      { strategy: "reconnect", initialDelayMs: 500, maxDelayMs: 8000, maxAttempts: 7 },
    );
    assert.deepEqual(
      strategyFromEnv("REPL", { REPL_ERROR_STRATEGY: "EXIT", REPL_EXIT_DELAY_MS: "0" }),
      {
        strategy: "exit",
        exitDelayMs: 0,
        exitCode: 1,
      },
    );
    assert.deepEqual(strategyFromEnv("REPL", { REPL_ERROR_STRATEGY: "log" }), { strategy: "log" });
  });

  it("rejects bad values with a ConfigError naming the variable and the range", () => {
    const bad: [Record<string, string>, string, RegExp][] = [
      [{ R_ERROR_STRATEGY: "retry" }, "R_ERROR_STRATEGY", /"reconnect", "exit" or "log"/],
      [{ R_RECONNECT_INITIAL_DELAY_MS: "-1" }, "R_RECONNECT_INITIAL_DELAY_MS", /from 1 to/],
      [{ R_RECONNECT_MAX_DELAY_MS: "abc" }, "R_RECONNECT_MAX_DELAY_MS", /integer/],
      [
        { R_RECONNECT_INITIAL_DELAY_MS: "5000", R_RECONNECT_MAX_DELAY_MS: "100" },
        "R_RECONNECT_MAX_DELAY_MS",
        /at least the initial delay/,
      ],
      [{ R_RECONNECT_MAX_ATTEMPTS: "-3" }, "R_RECONNECT_MAX_ATTEMPTS", /from 0 to/],
      [{ R_EXIT_DELAY_MS: "-5" }, "R_EXIT_DELAY_MS", /from 0 to/],
      [{ R_ERROR_STRATEGY: "exit", R_EXIT_CODE: "256" }, "R_EXIT_CODE", /from 0 to 255/],
      [{ R_EXIT_CODE: "1.5" }, "R_EXIT_CODE", /from 0 to 255/],
    ];
    for (const [env, field, msg] of bad) {
      assert.throws(
        () => strategyFromEnv("R", env),
        (e) => isConfigError(e) && e.field === field && msg.test(e.message),
        `${JSON.stringify(env)} ⇒ ${field}`,
      );
    }
    assert.throws(
      () => strategyFromEnv("bad prefix", {}),
      (e) => isConfigError(e) && e.field === "prefix",
    );
  });

  it("a stream refuses a bad recovery object", () => {
    const { make } = setup();
    const a = make("a");
    assert.throws(
      () => a.stream({ name: "x", run: () => {}, recovery: { strategy: "exit", exitCode: 300 } }),
      (e) => isConfigError(e) && e.field === "stream.recovery.exitCode",
    );
  });
});
