import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { GroupJson } from "../../src/cli/group-status.js";
import { openStore } from "../../src/open.js";
import { waitFor } from "../helpers/wait.js";
import { Sandbox, type Tenure } from "./harness.js";

/**
 * The CMD of `tenure run --group`: appends `start PARTITION TOKEN HOLDER NAME PID T`
 * when it starts and `end …` when it ends, 600 ms after SIGTERM.
 */
const PART_CHILD = `
import { appendFileSync } from "node:fs";
const [file] = process.argv.slice(2);
const e = process.env;
const log = (what) => appendFileSync(file, [what, e.TENURE_PARTITION, e.TENURE_TOKEN, e.TENURE_HOLDER, e.TENURE_NAME, process.pid, Date.now()].join(" ") + "\\n");
log("start");
// It takes a while to stop, so a partition handed over before its CMD ended would show.
process.on("SIGTERM", () => setTimeout(() => { log("end"); process.exit(0); }, 600));
setInterval(() => {}, 1000);
`;

interface PartRun {
  partition: number;
  token: bigint;
  holder: string;
  name: string;
  pid: number;
  start: number;
  end: number | null;
}

const TTL = "2s";
const P = 8;

/**
 * `tenure run --group` and `tenure status` for groups, end to end against one
 * store: two processes share 8 partitions 4 + 4, each CMD sees its own
 * partition and token; SIGTERM one → the other runs all 8 with grown tokens,
 * each moved partition's old CMD ended before its new one started.
 */
export function describeGroupCli(
  label: string,
  storeUrl: (sb: Sandbox) => string,
  opts: { skip?: string } = {},
): void {
  describe(`tenure run --group on ${label}`, opts, () => {
    const sb = new Sandbox();
    after(() => sb.cleanup());
    const child = join(sb.dir, "part.mjs");
    const log = join(sb.dir, "parts.log");
    writeFileSync(child, PART_CHILD);

    const runs = (): PartRun[] => {
      if (!existsSync(log)) return [];
      const byPid = new Map<number, PartRun>();
      for (const line of readFileSync(log, "utf8").split("\n")) {
        const [what, part, token, holder, name, pid, t] = line.split(" ");
        if (!what || !t) continue;
        if (what === "start")
          byPid.set(Number(pid), {
            partition: Number(part),
            token: BigInt(token!),
            holder: holder!,
            name: name!,
            pid: Number(pid),
            start: Number(t),
            end: null,
          });
        else {
          const r = byPid.get(Number(pid));
          if (r) r.end = Number(t);
        }
      }
      return [...byPid.values()];
    };
    /** Is `pid` still a live process? (A CMD killed after its grace never logs `end`.) */
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const running = () => runs().filter((r) => r.end === null && alive(r.pid));
    const status = async (args: string[]): Promise<string> => {
      const t = sb.tenure(["status", "--store", storeUrl(sb), ...args]);
      const exit = await t.exited;
      assert.equal(exit.code, 0, t.stderr);
      return t.stdout;
    };
    const member = (group: string, holder: string): Tenure =>
      sb.tenure([
        "run",
        "--store",
        storeUrl(sb),
        "--group",
        group,
        "--partitions",
        String(P),
        "--ttl",
        TTL,
        // The CMD stops 600 ms after SIGTERM; a loaded machine can add a second to that, and a
        // CMD killed at the end of its grace never logs `end`.
        "--grace",
        "3s",
        "--holder",
        holder,
        "--",
        process.execPath,
        child,
        log,
      ]);

    it("8 partitions over two processes: 4 + 4, one CMD each with its own token; SIGTERM one → the other runs all 8", async () => {
      const group = `cg-${label}-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
      const a = member(group, "proc-a");
      const b = member(group, "proc-b");
      // Settled: 8 CMDs running, 4 per process, one per partition.
      const per = (h: string) => running().filter((x) => x.holder === h).length;
      await waitFor(
        "4 + 4 running CMDs",
        () => running().length === P && per("proc-a") === 4 && per("proc-b") === 4,
        { timeoutMs: 20_000, intervalMs: 50 },
      ).catch((e: Error) => {
        const tail = (t: Tenure) => t.stderr.split("\n").slice(-15).join("\n");
        throw new Error(
          `${e.message}: running a ${per("proc-a")}, b ${per("proc-b")}\n--- a:\n${tail(a)}\n--- b:\n${tail(b)}`,
        );
      });
      const g = JSON.parse(await status([group, "--json"])) as GroupJson;
      assert.equal(g.partitions, P);
      assert.deepEqual(g.unowned, []);
      assert.deepEqual(
        g.holders.map((h) => [h.holder, h.member, h.partitions.length]),
        [
          ["proc-a", true, 4],
          ["proc-b", true, 4],
        ],
      );
      // Each CMD has its own partition's lease and token, as the store holds them.
      const store = await openStore(storeUrl(sb));
      const before = new Map<number, PartRun>();
      try {
        for (const r of running()) {
          assert.equal(r.name, `${group}/p/${r.partition}`);
          const l = await store.read(r.name);
          assert.equal(l?.holder, r.holder, `partition ${r.partition}`);
          assert.equal(l?.token, r.token, `partition ${r.partition}'s token`);
          assert.ok(g.holders.find((h) => h.holder === r.holder)!.partitions.includes(r.partition));
          before.set(r.partition, r);
        }
      } finally {
        await store.close();
      }
      assert.equal(before.size, P, "one CMD per partition");
      const text = await status([]);
      assert.match(text, new RegExp(`group ${group}: 8 partitions, 2 members, 0 unowned`));
      assert.match(text, /proc-a +1 +4 /);
      const all = JSON.parse(await status(["--json"])) as { name: string; group?: string }[];
      const mine = all.filter((l) => l.name.startsWith(`${group}/`));
      assert.equal(mine.length, P + 2, "8 partition leases and 2 member leases");
      assert.ok(mine.every((l) => l.group === group));

      // SIGTERM a: its CMDs stop, then its partitions go to b (handover, not expiry).
      const moved = [...before.values()].filter((r) => r.holder === "proc-a");
      a.signal("SIGTERM");
      const exit = await a.exited;
      assert.equal(exit.code, 0, a.stderr);
      await waitFor(
        "proc-b running all 8",
        () => {
          const r = running();
          return r.length === P && r.every((x) => x.holder === "proc-b");
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
      const now = running();
      for (const old of moved) {
        const all = runs().find((r) => r.pid === old.pid)!;
        assert.ok(all.end !== null, `proc-a's CMD of partition ${old.partition} ended`);
        const next = now.find((r) => r.partition === old.partition)!;
        assert.ok(
          next.token > old.token,
          `partition ${old.partition}: token ${old.token} → ${next.token}`,
        );
        assert.ok(
          next.start >= all.end!,
          `partition ${old.partition}: new CMD started ${all.end! - next.start} ms before the old one ended`,
        );
      }
      const after = JSON.parse(await status([group, "--json"])) as GroupJson;
      assert.deepEqual(
        after.holders.map((h) => [h.holder, h.partitions.length]),
        [["proc-b", 8]],
      );
      b.signal("SIGTERM");
      assert.equal((await b.exited).code, 0, b.stderr);
      assert.equal(running().length, 0, "every CMD stopped");
    });
  });
}
