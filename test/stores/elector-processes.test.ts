import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

/**
 * The elector on each real store: three candidates in separate processes;
 * SIGKILL of the leader ⇒ a new leader within ttl + retry; a graceful stop ⇒ a
 * new leader within 100 ms where the store notifies (else within retry).
 */
const WORKER = fileURLToPath(new URL("../helpers/elector-worker.js", import.meta.url));
const TTL = 1500;
const RETRY = 300;

interface Line {
  event: string;
  holder: string;
  pid: number;
  t: string;
  token?: string;
  reason?: string;
}

class Candidate {
  readonly lines: Line[] = [];
  readonly proc: ChildProcess;
  stderr = "";
  constructor(
    url: string,
    name: string,
    readonly holder: string,
  ) {
    this.proc = spawn(process.execPath, [WORKER, url, name, holder, String(TTL), String(RETRY)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let buf = "";
    this.proc.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf("\n");
      while (i >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (l.trim()) this.lines.push(JSON.parse(l) as Line);
        i = buf.indexOf("\n");
      }
    });
    this.proc.stderr!.on("data", (d: Buffer) => {
      this.stderr += d.toString();
    });
  }
  /** The time (monotonic ns) of the last event of that kind. */
  last(event: string): Line | undefined {
    return this.lines.filter((l) => l.event === event).at(-1);
  }
  leading(): boolean {
    const e = this.lines.filter((l) => l.event === "elected" || l.event === "demoted").at(-1);
    return e?.event === "elected" && this.proc.exitCode === null && this.proc.signalCode === null;
  }
  exited(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((r) => this.proc.once("exit", () => r()));
  }
}

const ms = (a: string, b: string) => Number(BigInt(b) - BigInt(a)) / 1e6;

const tmp = mkdtempSync(join(tmpdir(), "tenure-eproc-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * Longest time the server may keep a dead holder's lease: the TTL, except on
 * etcd, which grants whole seconds of at least its minimum TTL (1.5 s rounded
 * up to 2 s with default ticks) and sweeps expired leases every 500 ms.
 */
const serverTtl = (backend: string) =>
  backend === "etcd" ? Math.max(2, Math.ceil(TTL / 1000)) * 1000 + 500 : TTL;

const backends: { name: string; url: () => string | undefined; notifies: boolean; how: string }[] =
  [
    { name: "sqlite", url: () => `sqlite:${join(tmp, "leases.db")}`, notifies: false, how: "" },
    {
      name: "postgres",
      url: () => SERVICES.postgres,
      notifies: true,
      how: "start PostgreSQL on 127.0.0.1:5432 or set TENURE_TEST_PG_URL",
    },
    {
      name: "pgbouncer",
      url: () => SERVICES.pgbouncer,
      notifies: false,
      how: "bash scripts/services.sh start (needs pgbouncer: apt-get install -y pgbouncer)",
    },
    {
      name: "redis",
      url: () => SERVICES.redis,
      notifies: true,
      how: "start redis-server on 127.0.0.1:6379 or set TENURE_TEST_REDIS_URL",
    },
    {
      name: "etcd",
      url: () => SERVICES.etcd,
      notifies: true,
      how: "bash scripts/services.sh start (needs etcd: apt-get install -y etcd-server)",
    },
  ];

for (const b of backends) {
  const url = b.url();
  describe(`elector in separate processes: ${b.name}`, requireService(b.name, !!url, b.how), () => {
    const procs: Candidate[] = [];
    after(async () => {
      for (const p of procs) if (p.proc.exitCode === null) p.proc.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited()));
    });

    it("three candidates: one leader; SIGKILL ⇒ new leader within ttl + retry; graceful stop ⇒ fast handoff", async () => {
      const name = uniqueName(`eproc-${b.name}`);
      for (const h of ["c1", "c2", "c3"]) procs.push(new Candidate(url!, name, h));
      const leaderOf = () => procs.filter((p) => p.leading());
      const first = await waitFor(
        "a first leader",
        () => (leaderOf().length === 1 ? leaderOf()[0] : null),
        {
          timeoutMs: 15_000,
        },
      );
      // Everyone else is a follower
      await waitFor("all candidates started", () => procs.every((p) => p.last("started")), {
        timeoutMs: 15_000,
      });
      assert.equal(leaderOf().length, 1);

      // SIGKILL the leader.
      const killedAt = process.hrtime.bigint().toString();
      first.proc.kill("SIGKILL");
      await first.exited();
      const second = await waitFor(
        "a leader after SIGKILL",
        () => {
          const l = procs.filter((p) => p !== first && p.leading());
          return l.length === 1 ? l[0] : null;
        },
        { timeoutMs: TTL + RETRY + 5000 },
      );
      const failoverMs = ms(killedAt, second.last("elected")!.t);
      const failoverBound = serverTtl(b.name) + RETRY + 250;
      assert.ok(
        failoverMs <= failoverBound,
        `failover took ${failoverMs} ms (bound ${failoverBound})`,
      );
      assert.ok(BigInt(second.last("elected")!.token!) > BigInt(first.last("elected")!.token!));

      // Graceful stop of the new leader.
      second.proc.kill("SIGTERM");
      const third = await waitFor(
        "a leader after graceful stop",
        () => {
          const l = procs.filter((p) => p !== first && p !== second && p.leading());
          return l.length === 1 ? l[0] : null;
        },
        { timeoutMs: TTL + RETRY + 5000 },
      );
      await second.exited();
      const demoted = second.last("demoted");
      assert.equal(demoted?.reason, "stopped");
      const handoffMs = ms(demoted!.t, third.last("elected")!.t);
      const bound = b.notifies ? 100 : RETRY + 100;
      assert.ok(handoffMs <= bound, `handoff took ${handoffMs} ms (bound ${bound})`);
      assert.ok(BigInt(third.last("elected")!.token!) > BigInt(second.last("elected")!.token!));
    });
  });
}
