import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { openStore } from "../../src/open.js";
import { waitFor } from "../helpers/wait.js";
import { alive, checkRuns, formatRuns, Sandbox, type Tenure } from "./harness.js";

/** Timing of the end-to-end runs: short, so the whole file stays fast. */
export const TTL_MS = 2000;
const RETRY_MS = TTL_MS / 5;

/**
 * The end-to-end `tenure run` scenarios of issue 5, against one store.
 * `storeUrl(name)` gives the store URL for a sandbox (SQLite needs a file).
 */
export function describeCli(
  label: string,
  storeUrl: (sb: Sandbox) => string,
  opts: { skip?: string } = {},
): void {
  describe(`tenure run on ${label}`, opts, () => {
    const boxes: Sandbox[] = [];
    after(async () => {
      await Promise.all(boxes.map((b) => b.cleanup()));
    });
    const box = () => {
      const b = new Sandbox();
      boxes.push(b);
      return b;
    };
    const lease = () => `cli-${label}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const common = (sb: Sandbox, name: string) => [
      "--store",
      storeUrl(sb),
      "--name",
      name,
      "--ttl",
      `${TTL_MS}ms`,
      "--grace",
      "1s",
    ];
    /** Resolves once the store has seen `holder` renew `count` times (its expiry moved forward). */
    const renewals = async (sb: Sandbox, name: string, holder: string, count: number) => {
      const store = await openStore(storeUrl(sb));
      try {
        let seen = 0;
        let last: { at: number; expiresInMs: number } | null = null;
        await waitFor(
          `${count} renewals of ${holder}`,
          async () => {
            const info = await store.read(name);
            assert.equal(info?.holder, holder, "the lease changed hands");
            const at = performance.now();
            // Renewed when the expiry is later than the last sample's (minus clock steps).
            if (last && at + info.expiresInMs > last.at + last.expiresInMs + 50) seen += 1;
            last = { at, expiresInMs: info.expiresInMs };
            return seen >= count;
          },
          { timeoutMs: TTL_MS * count * 2, intervalMs: 20 },
        );
      } finally {
        await store.close();
      }
    };
    /** The holder id a process campaigns as (its "campaigning" line). */
    const own = (p: Tenure) => /holder=(\S+)/.exec(p.lines("campaigning")[0] ?? "")?.[1];
    /** What a failure message needs: every run, and each process's log. */
    const story = (procs: Tenure[], sb: Sandbox) =>
      `runs ${formatRuns(sb.runs())}\n${procs
        .map((p, i) => `--- proc ${i} (pid ${p.pid}):\n${p.stderr}`)
        .join("\n")}`;
    const leaderOf = (procs: Tenure[], holder: string) =>
      procs.find((p) => own(p) === holder && p.lines("elected").length > 0);

    it("runs exactly one command; SIGKILL and SIGTERM hand over; tokens increase; no overlap", async () => {
      const sb = box();
      const name = lease();
      const procs = [0, 1, 2].map(() => sb.run(common(sb, name)));
      const first = await waitFor("a command to start", () => sb.running()[0], {
        timeoutMs: 10_000,
      });
      // Everyone has made up its mind: one leader, two followers that know it. Judged
      // against the command running now: on a loaded machine the first term may have
      // ended (a late renewal) and a follower taken over, so every process can have
      // printed "leader is" by the time all know the current leader.
      await waitFor(
        "followers to know the leader",
        () => {
          const run = sb.running()[0];
          if (!run) return false;
          const followers = procs.filter((p) => own(p) !== run.holder);
          return (
            followers.length === 2 &&
            followers.every((p) =>
              p.lines("leader is").some((l) => l.includes(`holder=${run.holder} `)),
            )
          );
        },
        { timeoutMs: 10_000 },
      ).catch((e: unknown) => {
        const seen = procs.map(
          (p, i) =>
            `proc ${i}: ${[...p.lines("elected"), ...p.lines("leader is")].join(" | ") || "(nothing)"}`,
        );
        throw new Error(`${String(e)}; runs ${formatRuns(sb.runs())}; ${seen.join("; ")}`);
      });
      assert.equal(sb.running().length, 1, "exactly one command runs");
      const leader1 = leaderOf(procs, sb.running()[0]!.holder);
      assert.ok(leader1, "the leader's log says elected");

      // SIGKILL the leader: its guard stops the command at once; another takes over within ttl + retry.
      const killedAt = Date.now();
      leader1.signal("SIGKILL");
      await waitFor("the killed leader's command to end", () => sb.runs()[0]!.end !== null, {
        timeoutMs: 3000,
      });
      await waitFor("no command left behind by a SIGKILLed tenure", () => !alive(first.pid), {
        timeoutMs: 3000,
      });
      const second = await waitFor("a takeover after SIGKILL", () => sb.runs()[1], {
        timeoutMs: 10_000,
      });
      const takeoverMs = second.start - killedAt;
      assert.ok(
        takeoverMs <= TTL_MS + RETRY_MS + 1000,
        `takeover after SIGKILL took ${takeoverMs} ms (ttl ${TTL_MS} + retry ${RETRY_MS})`,
      );

      // SIGTERM the new leader: fast handoff (release), well within a second.
      const leader2 = leaderOf(procs, second.holder);
      assert.ok(leader2 && leader2 !== leader1);
      const termAt = Date.now();
      leader2.signal("SIGTERM");
      const third = await waitFor("a takeover after SIGTERM", () => sb.runs()[2], {
        timeoutMs: 5000,
      });
      const handoffMs = third.start - termAt;
      assert.ok(handoffMs < 1000, `handoff after SIGTERM took ${handoffMs} ms`);
      assert.deepEqual(await leader2.exited, { code: 0, signal: null }, leader2.stderr);
      assert.equal(sb.running().length, 1, story(procs, sb));

      const problem = checkRuns(sb.runs());
      assert.equal(problem, null, problem ?? "");
      // Stop the last one: it exits 0 after stopping its command.
      const leader3 = leaderOf(procs, third.holder)!;
      leader3.signal("SIGINT");
      assert.deepEqual(await leader3.exited, { code: 0, signal: null }, leader3.stderr);
      assert.equal(sb.running().length, 0);
    });

    it("F1: a leader stopped (SIGSTOP) past its ttl kills its command at once on SIGCONT and follows", async () => {
      const sb = box();
      const name = lease();
      const a = sb.run(common(sb, name));
      const aRun = await waitFor("A's command", () => sb.running()[0], { timeoutMs: 10_000 });
      const b = sb.run(common(sb, name));
      await waitFor("B to know A leads", () => b.lines("leader is").length > 0, {
        timeoutMs: 10_000,
      });

      a.signal("SIGSTOP");
      const bRun = await waitFor("B to take over while A is stopped", () => sb.runs()[1], {
        timeoutMs: TTL_MS * 3,
      });
      assert.notEqual(bRun.holder, aRun.holder);
      const linesBefore = a.stderr.split("\n").length;
      const contAt = Date.now();
      a.signal("SIGCONT");
      const ended = await waitFor("A's command to be stopped", () => sb.runs()[0]!.end, {
        timeoutMs: 3000,
      });
      assert.ok(ended - contAt < 1000, `A stopped its command ${ended - contAt} ms after SIGCONT`);
      await waitFor(
        "A to follow B",
        () => a.lines("leader is").some((l) => l.includes(bRun.holder)),
        {
          timeoutMs: TTL_MS * 2,
        },
      );
      // Let renew/retry periods pass before judging: nothing may loop. Not a
      // sleep: wait until the store shows B's lease renewed twice more.
      await renewals(sb, name, bRun.holder, 2);
      assert.equal(a.lines("demoted").length, 1, a.stderr);
      // docs/cli.md: on resume the leader checks its local deadline first.
      assert.match(a.lines("demoted")[0]!, /reason=expired( |$)/);
      assert.equal(a.lines("stopping command").length, 1, a.stderr);
      assert.equal(a.lines("started command").length, 1, "A ran no further leader work");
      const newLines = a.stderr.split("\n").length - linesBefore;
      assert.ok(newLines <= 8, `A logged ${newLines} lines after resuming:\n${a.stderr}`);
      assert.equal(sb.running().length, 1, "only B's command runs");
      assert.equal(sb.running()[0]!.holder, bRun.holder);
      assert.equal(a.exit, null, "A is still running as a follower");
    });

    it("F4: a command that always fails is restarted with backoff, then the leader resigns and another takes over", async () => {
      const sb = box();
      const name = lease();
      const flags = [...common(sb, name), "--restart-delay", "200ms", "--max-restarts", "2"];
      const a = sb.run(flags, "fail");
      await waitFor("A to lead", () => a.lines("elected").length > 0, { timeoutMs: 10_000 });
      const b = sb.run(flags, "fail");
      const resigned = await waitFor(
        "A to resign",
        () => a.lines("command keeps failing; resigning so another process can try")[0],
        { timeoutMs: 10_000 },
      );
      assert.ok(resigned);
      await waitFor("B to take over", () => b.lines("started command").length > 0, {
        timeoutMs: TTL_MS * 3,
      });
      const aHolder = sb.runs()[0]!.holder;
      await waitFor("B's command to run", () => sb.runs().some((r) => r.holder !== aHolder));
      const runs = sb.runs();
      const aRuns = runs.filter((r) => r.holder === runs[0]!.holder);
      assert.ok(aRuns.length >= 3, `A ran its command ${aRuns.length} times`);
      const first3 = aRuns.slice(0, 3);
      assert.ok(
        first3.every((r) => r.token === first3[0]!.token),
        "restarts stay in one term",
      );
      const gap1 = first3[1]!.start - first3[0]!.end!;
      const gap2 = first3[2]!.start - first3[1]!.end!;
      assert.ok(gap1 >= 170 && gap2 >= 340, `backoff gaps ${gap1} ms then ${gap2} ms`);
      assert.equal(a.lines("restarting command").length >= 2, true);
      const bRun = runs.find((r) => r.holder !== first3[0]!.holder);
      assert.ok(bRun && bRun.token > first3[0]!.token, "B leads with a newer token");
      assert.equal(checkRuns(sb.runs()), null);
    });

    it("--once on three processes: exactly one runs the command; all exit 0", async () => {
      const sb = box();
      const name = lease();
      const procs = [0, 1, 2].map(() => sb.run([...common(sb, name), "--once"], "sleep:1500"));
      const exits = await Promise.all(procs.map((p) => p.exited));
      const runs = sb.runs();
      assert.equal(runs.length, 1, `runs: ${JSON.stringify(runs.map((r) => String(r.token)))}`);
      assert.deepEqual(
        exits.map((e) => e.code),
        [0, 0, 0],
        procs.map((p) => p.stderr).join("\n---\n"),
      );
    });

    it("--once passes the command's exit code through; --no-wait exits 75 while another leads", async () => {
      const sb = box();
      const name = lease();
      const holder = sb.run(common(sb, name));
      await waitFor("a leader", () => sb.running()[0], { timeoutMs: 10_000 });
      const nowait = sb.run([...common(sb, name), "--once", "--no-wait"]);
      assert.equal((await nowait.exited).code, 75, nowait.stderr);
      holder.signal("SIGTERM");
      assert.equal((await holder.exited).code, 0);
      const other = lease();
      const once = sb.tenure([
        "run",
        ...common(sb, other),
        "--once",
        "--",
        process.execPath,
        "-e",
        "process.exit(7)",
      ]);
      assert.equal((await once.exited).code, 7, once.stderr);
    });
  });
}
