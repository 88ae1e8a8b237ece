import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { isStoreError, type StoreError } from "../../src/errors.js";
import { openStore, type StoreWait } from "../../src/open.js";
import type { LeaseStore } from "../../src/store/types.js";
import { etcdPorts } from "../helpers/etcd.js";
import { freePort } from "../helpers/ports.js";
import { REPO_ROOT, SERVICES } from "../helpers/services.js";

const TENURE_BIN = join(REPO_ROOT, "dist", "src", "cli", "main.js");

/** Each networked backend: its URL on `port`, and the real server's port for a late forwarder. */
const BACKENDS: { name: string; url: (port: number) => string; target: () => number | null }[] = [
  {
    name: "postgres",
    url: (p) =>
      `postgres://postgres:pw-startup@127.0.0.1:${p}/test?tenure_table=startup_${process.pid}`,
    target: () => Number(new URL(SERVICES.postgres).port || 5432),
  },
  {
    name: "redis",
    url: (p) => `redis://127.0.0.1:${p}?prefix=startup-${process.pid}:`,
    target: () => Number(new URL(SERVICES.redis).port || 6379),
  },
  {
    name: "etcd",
    url: (p) => `etcd://127.0.0.1:${p}?prefix=startup-${process.pid}/`,
    target: () => (SERVICES.etcd ? (etcdPorts(SERVICES.etcd)[0] ?? null) : null),
  },
];

const sockets = new Set<Socket>();

/** Starts forwarding 127.0.0.1:port to 127.0.0.1:target (a server that "comes up" late). */
function forward(port: number, target: number): Promise<Server> {
  const server = createServer((c) => {
    const up = connect(target, "127.0.0.1");
    sockets.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = () => {
      c.destroy();
      up.destroy();
    };
    c.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

function cli(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [TENURE_BIN, ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, TENURE_STORE: "" },
    });
    let stderr = "";
    p.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    p.on("exit", (code) => resolve({ code, stderr }));
  });
}

describe("start-up: every store opens the same way against a closed port", () => {
  const opened: LeaseStore[] = [];
  const servers: Server[] = [];
  after(async () => {
    await Promise.allSettled(opened.map((s) => s.close()));
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
  });

  for (const b of BACKENDS) {
    it(`${b.name}: openStore does not throw; calls fail as transient`, async () => {
      const port = await freePort();
      const store = await openStore(b.url(port));
      opened.push(store);
      const err = await store.read("x").then(
        () => assert.fail("a read on a closed port answered"),
        (e: unknown) => e,
      );
      assert.ok(isStoreError(err), String(err));
      assert.equal((err as StoreError).transient, true, (err as Error).message);
    });

    it(`${b.name}: connectTimeoutMs waits, reports the wait, and returns when time is up`, async () => {
      const port = await freePort();
      const waits: StoreWait[] = [];
      const t0 = Date.now();
      const store = await openStore(b.url(port), {
        connectTimeoutMs: 900,
        progressEveryMs: 300,
        onWait: (w) => waits.push(w),
      });
      opened.push(store);
      assert.ok(Date.now() - t0 >= 900, `returned after ${Date.now() - t0} ms`);
      const phases = waits.map((w) => w.phase);
      assert.equal(phases[0], "waiting");
      assert.equal(phases.at(-1), "timed-out");
      assert.ok(phases.filter((p) => p === "progress").length >= 1, phases.join(" "));
      assert.ok(
        phases.filter((p) => p === "progress").length <= 3,
        `progress at most every 300 ms: ${phases.join(" ")}`,
      );
      assert.equal(waits[0]!.error?.transient, true);
      assert.doesNotMatch(JSON.stringify(waits.map((w) => w.store)), /pw-startup/);
    });

    it(`${b.name}: a server that comes up during the wait is used at once`, async (t) => {
      const target = b.target();
      if (target === null) return t.skip("no etcd started (scripts/services.sh)");
      const port = await freePort();
      const waits: StoreWait[] = [];
      const late = setTimeout(async () => {
        servers.push(await forward(port, target));
      }, 400);
      try {
        const store = await openStore(b.url(port), {
          connectTimeoutMs: 20_000,
          onWait: (w) => waits.push(w),
        });
        opened.push(store);
        // Redis queues the first call until it connects (nothing to report); the others report the wait.
        const phases = waits.map((w) => w.phase);
        if (!(b.name === "redis" && phases.length === 0)) {
          assert.deepEqual(phases, ["waiting", "ready"]);
        }
        assert.equal(await store.read("startup-none"), null);
      } finally {
        clearTimeout(late);
      }
    });

    it(`${b.name}: tenure status --connect-timeout waits, says so once, then exits 69`, async () => {
      const port = await freePort();
      const r = await cli(["status", "--store", b.url(port), "--connect-timeout", "1s"]);
      assert.equal(r.code, 69, r.stderr);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 2, r.stderr);
      assert.match(
        lines[0]!,
        /INFO +waiting up to 1s for the store to answer \(--connect-timeout\)/,
      );
      assert.match(
        lines[1]!,
        /^tenure: store \S+ is unavailable \(gave up after 1(\.\d)?s, \d+ attempts?\)/,
      );
      assert.doesNotMatch(r.stderr, /pw-startup/);
    });
  }
});
