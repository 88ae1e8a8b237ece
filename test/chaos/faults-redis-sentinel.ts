/**
 * Backend `redis-sentinel` of the chaos harness: a throwaway Redis primary,
 * one replica and three sentinels (test/helpers/redis-sentinel.ts); the
 * candidates open `redis+sentinel://…` and follow failovers themselves.
 *
 * Faults:
 * - `failover-primary`: the primary is SIGKILLed with its replica in sync;
 *   the sentinels promote the replica. Healed when a quorum of sentinels
 *   names the promoted replica and it answers as master. Writes acknowledged
 *   in the primary's last moments may not have reached the replica
 *   (asynchronous replication): they are lost, not part of the history.
 * - `failover-lagging`: replication is frozen first (the replica stays up and
 *   eligible but receives nothing), the leader is SIGKILLed so another
 *   candidate starts a term on the primary only, that candidate is paused,
 *   the primary is SIGKILLed and the sentinels promote the replica, which has
 *   never seen that term. The lost term's holder wakes once another process
 *   leads on the promoted primary. Its refusals after the crash are excused
 *   (the data went with the primary), and the trust overlap is measured
 *   against the documented bound of one ttl.
 *
 * Either way the old primary is then restarted, empty, as a replica of the
 * new one, and the next episode starts from primary + in-sync replica again.
 */
import { RedisSentinelGroup, sentinelUnavailable } from "../helpers/redis-sentinel.js";
import { type LostTermCandidate, ledSince, loseTermOnPrimary } from "./lost-term.js";

export const SENTINEL_FAULTS = ["failover-primary", "failover-lagging"] as const;
export type SentinelFault = (typeof SENTINEL_FAULTS)[number];

/**
 * Sentinel `down-after-milliseconds` of the chaos group: how long the primary
 * must be silent before a failover starts. The overlap a lost term can cause
 * is bounded by ttl − (time from the crash to the promotion), and this is the
 * least of that time.
 */
export const SENTINEL_DOWN_AFTER_MS = 1000;

export function isSentinelFault(f: string): f is SentinelFault {
  return (SENTINEL_FAULTS as readonly string[]).includes(f);
}

export { sentinelUnavailable };

/** Starts the group for the harness; `cleanups` stops it. */
export async function startSentinelGroup(
  cleanups: (() => Promise<void>)[],
): Promise<RedisSentinelGroup> {
  const group = await RedisSentinelGroup.start({
    downAfterMs: SENTINEL_DOWN_AFTER_MS,
    failoverTimeoutMs: 2000,
  });
  cleanups.push(() => group.stop());
  return group;
}

type CandidateLike = LostTermCandidate;

export interface SentinelFaultContext<C extends CandidateLike> {
  group: RedisSentinelGroup;
  fault: SentinelFault;
  lead: C;
  cands: readonly C[];
  ttlMs: number;
  retryMs: number;
  deaths: { pid: number; t: string }[];
  pauses: { pid: number; from: string; to: string }[];
  must: (what: string, check: () => boolean, timeoutMs: number) => Promise<void>;
}

export interface SentinelFaultResult {
  faultAt: bigint;
  healAt: bigint;
  dataLostAt?: bigint;
  detail: string;
}

const now = () => process.hrtime.bigint();

/** Runs one failover fault (see the module comment). */
export async function runSentinelFault<C extends CandidateLike>(
  x: SentinelFaultContext<C>,
): Promise<SentinelFaultResult> {
  const { group, lead, cands, ttlMs, retryMs, must } = x;
  await group.ensureReplica();
  await group.waitFailoverAllowed();
  const oldPrimary = await group.primaryPort();
  if (x.fault === "failover-primary") {
    const faultAt = now();
    const t0 = Date.now();
    await group.killPrimary();
    // Replication is asynchronous: the replica was in sync before the kill, but
    // the leader kept writing, and what the primary acknowledged in its last
    // moments may never have reached the replica. Those writes are lost with
    // it (not in the store's history), as in failover-lagging.
    const dataLostAt = now();
    await group.waitPromoted(oldPrimary);
    const healAt = now();
    const promotedMs = Date.now() - t0;
    await group.restartAsReplica(oldPrimary);
    return {
      faultAt,
      healAt,
      dataLostAt,
      detail: `primary SIGKILL (replica in sync), promoted in ${promotedMs} ms, old primary back as a replica`,
    };
  }
  const faultAt = now();
  await group.freezeReplication();
  const { lost, lostToken, pauseFrom } = await loseTermOnPrimary({ ...x, faultAt });
  let t0 = Date.now();
  let healAt: bigint;
  let promotedMs: number;
  let dataLostAt = now();
  try {
    await group.waitFailoverAllowed();
    t0 = Date.now();
    await group.killPrimary();
    // The lost term's data went with the primary: any write acknowledged
    // from now on was made on a surviving server.
    dataLostAt = now();
    await group.waitPromoted(oldPrimary);
    healAt = now();
    promotedMs = Date.now() - t0;
    const heal = healAt;
    await must(
      "a term on the promoted primary while the lost term's holder is paused",
      () => cands.some((c) => c !== lead && c !== lost && ledSince(c.lines, heal)),
      2 * (ttlMs + retryMs) + 5000,
    );
  } finally {
    lost.proc.kill("SIGCONT");
    lost.paused = false;
    x.pauses.push({ pid: lost.pid, from: pauseFrom.toString(), to: now().toString() });
  }
  // When the first term on the promoted primary began, against when the
  // harness saw the promotion (it can be before: see ledSince).
  const firstTerm = cands
    .filter((c) => c !== lead && c !== lost)
    .flatMap((c) => c.lines)
    .filter((l) => l.event === "lead-start" && BigInt(l.t) >= dataLostAt)
    .map((l) => BigInt(l.t))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))[0];
  const firstTermMs =
    firstTerm === undefined
      ? ""
      : `, first term there ${Math.round(Number(firstTerm - healAt) / 1e6)} ms after`;
  await group.restartAsReplica(oldPrimary);
  return {
    faultAt,
    healAt,
    dataLostAt,
    detail: `replication frozen, leader SIGKILL, token ${lostToken} issued on the primary only, primary SIGKILL, replica promoted in ${promotedMs} ms${firstTermMs}, old primary back as a replica`,
  };
}
