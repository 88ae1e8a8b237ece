import assert from "node:assert/strict";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { formatDuration, parseDuration } from "../../src/cli/duration.js";
import { UsageError } from "../../src/cli/exit-codes.js";
import { formatRuns, Sandbox } from "./harness.js";

const sb = new Sandbox();
after(() => sb.cleanup());
const store = `sqlite:${join(sb.dir, "leases.db")}`;

describe("durations: compound forms and days", () => {
  it("parses what it prints, largest unit first", () => {
    const cases: [string, number][] = [
      ["0", 0],
      ["250ms", 250],
      ["1.5s", 1500],
      ["1m30s", 90_000],
      ["1h30m", 5_400_000],
      ["2h0m5s", 7_205_000],
      ["1d", 86_400_000],
      ["1d12h", 129_600_000],
      ["1s500ms", 1500],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration("--ttl", text), ms, text);
    for (const ms of [250, 1500, 90_000, 5_400_000, 86_400_000, 90_000_000, 129_600_000]) {
      assert.equal(parseDuration("--ttl", formatDuration(ms)), ms, formatDuration(ms));
    }
    assert.equal(formatDuration(90_000), "1m30s");
    assert.equal(formatDuration(86_400_000), "1d");
  });

  it("refuses bare numbers, units out of order or repeated, and junk, naming the flag", () => {
    for (const text of ["15", "30s1m", "1m1m", "1m 30s", "1x", "m", "1d-2h", "", "1.s"]) {
      assert.throws(
        () => parseDuration("--grace", text),
        (e: unknown) => e instanceof UsageError && /^--grace: .*1m30s/.test(e.message),
        text,
      );
    }
    assert.throws(() => parseDuration("--ttl", "25d"), /--ttl: 25d is out of range/);
  });
});

describe("tenure run --max-terms", () => {
  it("a command that can never start: the only candidate gives up and exits 76", async () => {
    const t = sb.run(
      [
        "--store",
        store,
        "--name",
        "give-up",
        "--ttl",
        "300ms",
        "--max-restarts",
        "1",
        "--restart-delay",
        "10ms",
        "--max-terms",
        "2",
      ],
      "fail",
    );
    const exit = await t.exited;
    assert.equal(exit.code, 76, t.stderr);
    assert.equal(t.lines("command kept failing; giving up \\(--max-terms\\)").length, 1, t.stderr);
    assert.equal(t.lines("command keeps failing; resigning so another process can try").length, 1);
    // two terms, two runs each (the first run and one restart)
    const runs = sb.runs();
    assert.equal(runs.length, 4, formatRuns(runs));
    assert.equal(new Set(runs.map((r) => r.token)).size, 2);
  });
});
