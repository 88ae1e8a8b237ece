import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { GroupFleet, quantile } from "../helpers/group-fleet.js";
import { dropTestTable, pgAnswers } from "../helpers/pg.js";
import { redisAnswers } from "../helpers/redis.js";
import { requireService, SERVICES } from "../helpers/services.js";
import { uniqueName, waitFor } from "../helpers/wait.js";

/**
 * Groups across OS processes (one member per process, test/helpers/group-worker.ts)
 * on real Redis and PostgreSQL: 256 partitions over 4 processes → 64 each;
 * SIGKILL one → the others own its partitions once their leases expire
 * (within ttl + retry); a graceful stop of one → its partitions are handed
 * over by release + notification. That run uses a 30 s ttl, so only the
 * handover can explain a move within seconds; each partition's handoff time
 * (stop → assigned elsewhere) is printed.
 */
const P = 256;
const CRASH_TTL = 3000;
const GRACEFUL_TTL = 30_000;
const TABLE = `tenure_t_gproc_${process.pid}`;

after(async () => {
  await dropTestTable(TABLE);
});

async function settle(fleet: GroupFleet, what: string, ids: string[], timeoutMs: number) {
  try {
    await waitFor(what, () => fleet.balanced(ids), { timeoutMs, intervalMs: 10 });
  } catch (e) {
    const c = [...fleet.counts(ids)].map(([id, n]) => `${id}: ${n}`).join(", ");
    throw new Error(`${(e as Error).message} (owned: ${c}; errors: ${fleet.errors.join("; ")})`);
  }
}

async function fourMembers(url: string, ttlMs: number): Promise<GroupFleet> {
  const fleet = new GroupFleet({ url, group: uniqueName("gp"), partitions: P, ttlMs });
  const ids = ["m0", "m1", "m2", "m3"];
  await Promise.all(ids.map((id) => fleet.spawn(id).started));
  await settle(fleet, "4 processes owning 64 partitions each", ids, 30_000);
  for (const n of fleet.counts(ids).values()) assert.equal(n, 64);
  return fleet;
}

async function crash(label: string, url: string): Promise<void> {
  const fleet = await fourMembers(url, CRASH_TTL);
  try {
    const lost = fleet.ownedBy("m1");
    const before = new Map(lost.map((p) => [p, fleet.tokens.get(p)!]));
    const t0 = await fleet.kill("m1");
    const rest = ["m0", "m2", "m3"];
    // ttl + retry: the leases expire after the ttl, the others retry every ttl/5 or so.
    const bound = CRASH_TTL + CRASH_TTL / 5 + 2000;
    await settle(fleet, "the 3 others owning all 256", rest, bound);
    const tookMs = Math.max(...lost.map((p) => fleet.last(p)!.t)) - t0;
    for (const p of lost) {
      assert.ok(fleet.tokens.get(p)! > before.get(p)!, `partition ${p}: the token grew`);
    }
    // Not before the leases could have expired (last renewed at most a renew interval, ttl/3,
    // before the kill): nobody took a crashed member's partition early.
    const earliest = CRASH_TTL - CRASH_TTL / 3 - 200;
    assert.ok(tookMs >= earliest, `taken after ${Math.round(tookMs)} ms < ${earliest}`);
    process.stderr.write(
      `# ${label}: SIGKILL of a member with ${lost.length} partitions → all owned by the others ${Math.round(tookMs)} ms later (ttl ${CRASH_TTL})\n`,
    );
  } finally {
    await fleet.close();
  }
}

async function graceful(label: string, url: string): Promise<void> {
  const fleet = await fourMembers(url, GRACEFUL_TTL);
  try {
    const moved = fleet.ownedBy("m2");
    const before = new Map(moved.map((p) => [p, fleet.tokens.get(p)!]));
    const { stopping, stopped } = await fleet.stop("m2");
    const rest = ["m0", "m1", "m3"];
    // Far below the 30 s ttl: only a release + notification explains it.
    await settle(fleet, "the 3 others owning all 256 after a graceful stop", rest, 5000);
    const handoff = moved.map((p) => {
      const a = fleet.last(p)!;
      assert.notEqual(a.id, "m2");
      assert.ok(a.token > before.get(p)!, `partition ${p}: the token grew`);
      return a.t - stopping;
    });
    const max = Math.max(...handoff);
    assert.ok(max < GRACEFUL_TTL / 6, `handoff took up to ${Math.round(max)} ms`);
    process.stderr.write(
      `# ${label}: graceful stop of a member with ${moved.length} partitions (ttl ${GRACEFUL_TTL}): stop() took ${Math.round(stopped - stopping)} ms; handoff (stop → assigned elsewhere) p50 ${Math.round(quantile(handoff, 0.5))} ms, p99 ${Math.round(quantile(handoff, 0.99))} ms, max ${Math.round(max)} ms\n`,
    );
  } finally {
    await fleet.close();
  }
}

describe("groups across processes on Redis", async () => {
  const opts = requireService("Redis", await redisAnswers(SERVICES.redis), "start redis-server");
  // A db of its own: Redis list() scans the whole db (see test/cli/group-redis.test.ts).
  const url = () => {
    const u = new URL(SERVICES.redis);
    u.pathname = "/7";
    u.searchParams.set("prefix", `${uniqueName("tgp")}:`);
    return u.toString();
  };
  it("4 processes × 64; SIGKILL one → its partitions taken after expiry", opts, () =>
    crash("redis", url()),
  );
  it("4 processes × 64; graceful stop → handed over at once", opts, () => graceful("redis", url()));
});

describe("groups across processes on PostgreSQL", async () => {
  const opts = requireService("PostgreSQL", await pgAnswers(), "start PostgreSQL");
  const url = () => {
    const u = new URL(SERVICES.postgres);
    u.searchParams.set("tenure_table", TABLE);
    return u.toString();
  };
  it("4 processes × 64; SIGKILL one → its partitions taken after expiry", opts, () =>
    crash("postgres", url()),
  );
  it("4 processes × 64; graceful stop → handed over at once", opts, () =>
    graceful("postgres", url()),
  );
});
