/**
 * The groups bench: P partitions over member processes (one OS process each,
 * test/helpers/group-worker.ts) on one store. Measures, in order, on one
 * fleet: 4 members settling; the store requests one member makes per renewal
 * interval in steady state; a 5th member joining; one member leaving
 * gracefully (each partition's handoff: graceful stop begun → assigned to
 * another member); one member SIGKILLed (its partitions taken after expiry).
 */
import { randomBytes } from "node:crypto";
import { GroupFleet, quantile } from "../test/helpers/group-fleet.js";

export interface GroupsConfig {
  backend: string;
  url: string;
  partitions: number;
  ttlMs: number;
}

/** One rebalance: how long until balanced again, and how many partitions moved. */
export interface Rebalance {
  /** From the event (join: the joiner started; leave: stop begun; crash: SIGKILL) to the last partition assigned. */
  ms: number;
  moved: number;
}

export interface GroupsResult {
  backend: string;
  partitions: number;
  ttlMs: number;
  /** From spawning 4 members to all partitions owned, balanced. */
  settleMs?: number;
  /** Store calls of one member per renewal interval (ttl/3), by method, in steady state with 4 members. */
  callsPerInterval?: Record<string, number>;
  join?: Rebalance;
  leave?: Rebalance & {
    handoffP50Ms: number;
    handoffP99Ms: number;
    handoffMaxMs: number;
    stopMs: number;
  };
  crash?: Rebalance;
  error?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.timeOrigin + performance.now();

async function until(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Assignments after `t0` and the time of the last one. */
function since(fleet: GroupFleet, t0: number): Rebalance {
  const after = fleet.log.filter((a) => a.t >= t0);
  const last = after.length ? Math.max(...after.map((a) => a.t)) : t0;
  return { ms: round(last - t0), moved: new Set(after.map((a) => a.p)).size };
}

const round = (x: number) => Math.round(x * 10) / 10;

export async function runGroups(c: GroupsConfig): Promise<GroupsResult> {
  const out: GroupsResult = { backend: c.backend, partitions: c.partitions, ttlMs: c.ttlMs };
  const fleet = new GroupFleet({
    url: c.url,
    group: `bench-g-${randomBytes(4).toString("hex")}`,
    partitions: c.partitions,
    ttlMs: c.ttlMs,
  });
  const bound = 10 * c.ttlMs + 30_000;
  try {
    const t0 = now();
    const four = ["m0", "m1", "m2", "m3"];
    await Promise.all(four.map((id) => fleet.spawn(id).started));
    await until("4 members balanced", () => fleet.balanced(four), bound);
    out.settleMs = round(now() - t0);
    // Let the start-up burst drain, then count one member's store calls over 3 renewal intervals.
    await sleep(c.ttlMs / 3);
    const a = await fleet.stats("m0");
    const interval = c.ttlMs / 3;
    await sleep(3 * interval);
    const b = await fleet.stats("m0");
    out.callsPerInterval = {};
    for (const k of Object.keys(b)) {
      const d = (b[k] ?? 0) - (a[k] ?? 0);
      if (d > 0) out.callsPerInterval[k] = round(d / 3);
    }

    const joinT = await fleet.spawn("m4").started;
    const five = [...four, "m4"];
    await until("5 members balanced", () => fleet.balanced(five), bound);
    out.join = since(fleet, joinT);
    await sleep(200);

    const leaving = fleet.ownedBy("m1");
    const { stopping, stopped } = await fleet.stop("m1");
    const afterLeave = ["m0", "m2", "m3", "m4"];
    await until("balanced after a graceful leave", () => fleet.balanced(afterLeave), bound);
    const handoff = leaving.map((p) => (fleet.last(p)?.t ?? Number.NaN) - stopping);
    out.leave = {
      ...since(fleet, stopping),
      stopMs: round(stopped - stopping),
      handoffP50Ms: round(quantile(handoff, 0.5)),
      handoffP99Ms: round(quantile(handoff, 0.99)),
      handoffMaxMs: round(Math.max(...handoff)),
    };
    await sleep(200);

    const killT = await fleet.kill("m2");
    const afterCrash = ["m0", "m3", "m4"];
    await until("balanced after a crash", () => fleet.balanced(afterCrash), bound);
    out.crash = since(fleet, killT);
  } catch (e) {
    out.error = (e as Error).message;
  } finally {
    await fleet.close();
  }
  return out;
}
