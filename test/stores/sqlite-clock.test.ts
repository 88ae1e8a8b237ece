/**
 * Whose clock the SQLite store judges expiry by, with real processes on one
 * real file: a candidate in another time namespace (CLOCK_MONOTONIC offset by
 * an hour) and one under libfaketime (wall clock jumped; monotonic faked or
 * not) must neither take a live lease nor keep one alive for the wrong time.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { fakedClockReason, parseTimensOffsets } from "../../src/stores/sqlite/clock.js";
import { openSqliteStore } from "../../src/stores/sqlite/index.js";
import { requireService } from "../helpers/services.js";
import { uniqueName } from "../helpers/wait.js";

const dir = mkdtempSync(join(tmpdir(), "tenure-sqlite-clock-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const STORE = fileURLToPath(new URL("../../src/stores/sqlite/index.js", import.meta.url));
const HOUR_S = 3600;

/** Node code for a child: opens the store on `file`, runs one acquire, prints the result as JSON. */
const CHILD = `
const { openSqliteStore } = await import(process.env.STORE_MODULE);
const [file, name, holder, ttl] = process.argv.slice(1);
try {
  const s = await openSqliteStore("sqlite:" + file);
  const r = await s.acquire(name, holder, Number(ttl));
  await s.close();
  console.log(JSON.stringify({ acquired: r.acquired, token: r.acquired ? String(r.lease.token) : null }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message) }));
}`;

function child(
  prefix: string[],
  env: Record<string, string>,
  args: string[],
): Promise<{ acquired?: boolean; error?: string }> {
  const [cmd, ...rest] = [...prefix, process.execPath, "--input-type=module", "-e", CHILD, ...args];
  return new Promise((resolve, reject) => {
    execFile(
      cmd!,
      [...rest],
      { env: { ...process.env, STORE_MODULE: STORE, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const line = stdout.trim().split("\n").at(-1) ?? "";
        try {
          resolve(JSON.parse(line));
        } catch {
          reject(new Error(`child said ${JSON.stringify(stdout)} ${stderr} ${err?.message ?? ""}`));
        }
      },
    );
  });
}

const TIMENS = ["unshare", "--time", `--monotonic=${HOUR_S}`, `--boottime=${HOUR_S}`, "--"];
const timensOk = spawnSync(TIMENS[0]!, [...TIMENS.slice(1), "true"]).status === 0;
const FAKETIME = [
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/faketime/libfaketime.so.1",
].find((p) => existsSync(p));

describe("sqlite store clock: units", () => {
  it("parses the kernel's time-namespace offsets (names or clock ids)", () => {
    assert.deepEqual(
      parseTimensOffsets("monotonic        3600         0\nboottime      -5 500000000\n"),
      {
        monotonicMs: 3_600_000n,
        boottimeMs: -4500n,
      },
    );
    assert.deepEqual(parseTimensOffsets("1 2 0\n7 0 0\n"), { monotonicMs: 2000n, boottimeMs: 0n });
  });
  it("refuses a monotonic clock ahead of the boot clock, and only that", () => {
    assert.equal(
      fakedClockReason(
        () => 5000n,
        () => 5000n,
      ),
      null,
    );
    assert.equal(
      fakedClockReason(
        () => 5990n,
        () => 5000n,
      ),
      null,
    ); // within 1 s (10 ms steps, read order)
    assert.equal(
      fakedClockReason(
        () => 1000n,
        () => 9000n,
      ),
      null,
    ); // suspended 8 s: boot clock ahead
    assert.equal(
      fakedClockReason(
        () => 1000n,
        () => null,
      ),
      null,
    ); // no /proc/uptime
    assert.match(
      fakedClockReason(
        () => 7001n,
        () => 5000n,
      ) ?? "",
      /ahead of the kernel's boot clock/,
    );
  });
});

describe(
  "sqlite store clock: a candidate in a time namespace an hour ahead",
  requireService("unshare --time", timensOk, "cannot create a time namespace here"),
  () => {
    it("cannot take a live lease, and its own lease lasts its ttl for everyone else", async () => {
      const file = join(dir, `${uniqueName("ns")}.db`);
      const here = await openSqliteStore(`sqlite:${file}`);
      try {
        // A lease held here; the jumped candidate must see it live.
        const live = uniqueName("live");
        assert.equal((await here.acquire(live, "here", 60_000)).acquired, true);
        const stolen = await child(TIMENS, {}, [file, live, "jumped", "60000"]);
        assert.deepEqual(stolen, { acquired: false, token: null });
        // A lease taken by the jumped candidate lasts 60 s here, not an hour and a minute.
        const its = uniqueName("its");
        assert.equal((await child(TIMENS, {}, [file, its, "jumped", "60000"])).acquired, true);
        const seen = await here.read(its);
        assert.ok(seen, "the jumped candidate's live lease reads as free");
        assert.equal(seen.holder, "jumped");
        assert.ok(
          seen.expiresInMs <= 60_000 && seen.expiresInMs > 30_000,
          `expires in ${seen.expiresInMs} ms, ttl 60000`,
        );
        assert.equal((await here.acquire(its, "here", 60_000)).acquired, false);
      } finally {
        await here.close();
      }
    });
  },
);

describe(
  "sqlite store clock: a candidate under libfaketime",
  requireService("libfaketime", !!FAKETIME, "apt-get install faketime"),
  () => {
    it("wall clock jumped an hour (monotonic untouched): no effect on expiry", async () => {
      const file = join(dir, `${uniqueName("ft")}.db`);
      const here = await openSqliteStore(`sqlite:${file}`);
      try {
        const live = uniqueName("live");
        assert.equal((await here.acquire(live, "here", 60_000)).acquired, true);
        for (const jump of ["+1h", "-1h"]) {
          const env = { LD_PRELOAD: FAKETIME!, FAKETIME: jump, FAKETIME_DONT_FAKE_MONOTONIC: "1" };
          assert.deepEqual(await child([], env, [file, live, "jumped", "60000"]), {
            acquired: false,
            token: null,
          });
        }
      } finally {
        await here.close();
      }
    });
    it("monotonic clock faked with the wall clock: the store refuses to open", async () => {
      const file = join(dir, `${uniqueName("ft")}.db`);
      const here = await openSqliteStore(`sqlite:${file}`);
      try {
        const live = uniqueName("live");
        assert.equal((await here.acquire(live, "here", 60_000)).acquired, true);
        for (const jump of ["+1h", "-1h"]) {
          const r = await child([], { LD_PRELOAD: FAKETIME!, FAKETIME: jump }, [
            file,
            live,
            "jumped",
            "60000",
          ]);
          assert.match(r.error ?? `acquired=${r.acquired}`, /clock is faked/);
        }
        assert.equal((await here.read(live))?.holder, "here");
      } finally {
        await here.close();
      }
    });
  },
);
