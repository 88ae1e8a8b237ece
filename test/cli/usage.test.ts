import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { REPO_ROOT } from "../helpers/services.js";
import { waitFor } from "../helpers/wait.js";
import { Sandbox } from "./harness.js";

const sb = new Sandbox();
after(() => sb.cleanup());
const store = `sqlite:${join(sb.dir, "leases.db")}`;

/** Runs `tenure ARGS…` to completion. */
async function tenure(args: string[], env: NodeJS.ProcessEnv = {}) {
  const t = sb.tenure(args, env);
  const exit = await t.exited;
  return { code: exit.code, stdout: t.stdout, stderr: t.stderr };
}

/** Exactly one line on stderr, starting with `tenure: `. */
function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^tenure: /);
  return lines[0]!;
}

describe("tenure CLI: usage, exit codes, status/watch/release", () => {
  it("--version prints package.json's version; --help documents the default store and exit codes", async () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as {
      version: string;
    };
    const v = await tenure(["--version"]);
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), `tenure ${pkg.version}`);
    const h = await tenure(["run", "--help"], { XDG_STATE_HOME: "/var/tmp/xdg-test" });
    assert.equal(h.code, 0);
    assert.match(h.stdout, /sqlite:\/var\/tmp\/xdg-test\/tenure\/leases\.db/);
    assert.match(h.stdout, /64 +usage error/);
    assert.match(h.stdout, /75 +run --no-wait/);
  });

  it("usage errors exit 64 with one line naming the flag", async () => {
    const cases: [string[], RegExp][] = [
      [["run", "--name", "x", "--bogus", "--", "true"], /Unknown option '--bogus'/],
      [["run", "--name", "x", "--ttl", "15", "--", "true"], /--ttl: "15" is not a duration/],
      [
        ["run", "--name", "x", "--grace", "soon", "--", "true"],
        /--grace: "soon" is not a duration/,
      ],
      [["run", "--", "true"], /--name is required/],
      [["run", "--name", "bad name!", "--", "true"], /--name: must be 1–128 characters/],
      [["run", "--name", "x"], /missing command/],
      [["run", "--name", "x", "--restart", "sometimes", "--", "true"], /--restart: "sometimes"/],
      [["run", "--group", "g", "--", "true"], /--partitions is required with --group/],
      [
        ["run", "--group", "g", "--partitions", "0", "--", "true"],
        /--partitions: "0" must be a whole number from 1 to 65536/,
      ],
      [
        ["run", "--group", "g", "--partitions", "65537", "--", "true"],
        /--partitions: "65537" must be a whole number from 1 to 65536/,
      ],
      [
        ["run", "--group", "g", "--partitions", "8", "--once", "--", "true"],
        /--once cannot be used with --group/,
      ],
      [
        ["run", "--group", "g", "--partitions", "8", "--weight", "0", "--", "true"],
        /--weight: "0"/,
      ],
      [["run", "--group", "bad name!", "--partitions", "8", "--", "true"], /--group: must be/],
      [["run", "--name", "x", "--partitions", "8", "--", "true"], /--partitions needs --group/],
      [["watch"], /NAME is required/],
      [["release", "x"], /refusing .* without --force/],
      [["frobnicate"], /unknown command "frobnicate"/],
      [["status", "--store", "ftp://u:hunter2@h/x"], /--store: unknown store URL scheme/],
    ];
    for (const [args, re] of cases) {
      const withStore = args.includes("--store")
        ? args
        : [args[0]!, "--store", store, ...args.slice(1)];
      const r = await tenure(withStore);
      assert.equal(r.code, 64, `${args.join(" ")}: ${r.stderr}`);
      assert.match(oneLine(r.stderr), re);
      assert.doesNotMatch(r.stderr, /hunter2/);
    }
  });

  it("a missing command exits 127 before campaigning", async () => {
    const r = await tenure(["run", "--store", store, "--name", "x", "--", "no-such-command-xyz"]);
    assert.equal(r.code, 127);
    assert.match(oneLine(r.stderr), /command not found: no-such-command-xyz/);
  });

  it("an unreachable store exits 69 with one error line and never prints the password", async () => {
    for (const url of [
      "redis://user:hunter2@127.0.0.1:1",
      "postgres://user:hunter2@127.0.0.1:1/db",
    ]) {
      for (const args of [["run", "--name", "x", "--", "true"], ["status"], ["watch", "x"]]) {
        const r = await tenure([
          args[0]!,
          "--store",
          url,
          "--connect-timeout",
          "300ms",
          ...args.slice(1),
        ]);
        assert.equal(r.code, 69, `${url} ${args[0]}: ${r.stderr}`);
        // the wait is shown as one log line first (see test/store/startup.test.ts)
        const [waiting, ...rest] = r.stderr.split("\n");
        assert.match(waiting!, /INFO +waiting up to 300ms for the store to answer/);
        const line = oneLine(rest.join("\n"));
        assert.match(line, /127\.0\.0\.1:1/);
        assert.doesNotMatch(r.stderr + r.stdout, /hunter2/);
      }
    }
  });

  it("status, watch and release show and break a lease", async () => {
    const name = `cli-usage-${process.pid}`;
    const watcher = sb.tenure(["watch", "--store", store, name, "--json"]);
    await waitFor("watch to print 'no leader'", () => watcher.stdout.includes('"holder":null'));
    const leader = sb.run(["--store", store, "--name", name, "--ttl", "2s", "--holder", "me-1"]);
    await waitFor("a leader", () => sb.running()[0], { timeoutMs: 10_000 });

    const s = await tenure(["status", "--store", store, name, "--json"]);
    assert.equal(s.code, 0, s.stderr);
    const st = JSON.parse(s.stdout) as { holder: string; token: string; expiresInMs: number };
    assert.equal(st.holder, "me-1");
    assert.equal(typeof st.token, "string");
    assert.equal(st.token, String(sb.running()[0]!.token));
    const table = await tenure(["status", "--store", store]);
    assert.match(table.stdout, /^NAME +HOLDER +TOKEN +EXPIRES IN\n/);
    assert.match(table.stdout, new RegExp(`${name} +me-1 +${st.token} +\\d`));

    await waitFor("watch to print the leader", () => watcher.stdout.includes('"holder":"me-1"'));

    const r = await tenure(["release", "--store", store, name, "--force"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`released ${name} \\(was held by me-1, token ${st.token}\\)`),
    );
    // The holder notices at its next renewal, stops its command and campaigns again.
    await waitFor("the old leader to notice", () => leader.lines("demoted").length > 0, {
      timeoutMs: 5000,
    });
    assert.match(leader.lines("demoted")[0]!, /reason=lost/);
    await waitFor("a new term", () => sb.runs().length === 2 && sb.running().length === 1, {
      timeoutMs: 5000,
    });
    assert.ok(sb.runs()[1]!.token > sb.runs()[0]!.token);
    await waitFor("watch to print the new term", () =>
      watcher.stdout.includes(`"token":"${sb.runs()[1]!.token}"`),
    );
    const lines = watcher.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { holder: unknown });
    assert.ok(lines.length >= 3, watcher.stdout);
    watcher.signal("SIGINT");
    assert.equal((await watcher.exited).code, 0);
    leader.signal("SIGTERM");
    assert.equal((await leader.exited).code, 0);
  });
});
