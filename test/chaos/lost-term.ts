/**
 * The opening move of the replicated-store faults (postgres-standby's
 * promote-standby, redis-sentinel's failover-lagging): with replication
 * frozen, the leader dies, another candidate takes a term on the primary that
 * the replica never sees and writes under it, and that holder is paused so
 * the promoted server's first term goes to another process (a repeated token
 * then shows as one token of two processes); it wakes while it may still
 * trust its term.
 */
import type { ChildProcess } from "node:child_process";
import type { WorkerLine } from "./checker.js";

/** The part of the harness's candidate this step uses. */
export interface LostTermCandidate {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly lines: readonly WorkerLine[];
  paused: boolean;
  leading(): boolean;
  has(event: string, after?: bigint): boolean;
}

export interface LostTerm<C> {
  /** The candidate holding the term the replica never saw (now SIGSTOPped). */
  readonly lost: C;
  /** That term's token, as its holder printed it. */
  readonly lostToken: string | undefined;
  /** When the pause began (monotonic ns), for the harness's pause record. */
  readonly pauseFrom: bigint;
}

/** SIGKILLs `lead`, waits for a term (with a write) on the primary after `faultAt`, and SIGSTOPs its holder. */
export async function loseTermOnPrimary<C extends LostTermCandidate>(x: {
  lead: C;
  cands: readonly C[];
  faultAt: bigint;
  ttlMs: number;
  retryMs: number;
  deaths: { pid: number; t: string }[];
  must: (what: string, check: () => boolean, timeoutMs: number) => Promise<void>;
}): Promise<LostTerm<C>> {
  const { lead, cands, faultAt } = x;
  const killAt = process.hrtime.bigint();
  lead.proc.kill("SIGKILL");
  x.deaths.push({ pid: lead.pid, t: killAt.toString() });
  await x.must(
    "a term on the primary after the freeze",
    () => cands.some((c) => c !== lead && c.leading() && c.has("wrote", faultAt)),
    3 * (x.ttlMs + x.retryMs) + 2000,
  );
  const lost = cands.find((c) => c !== lead && c.leading())!;
  const lostToken = lost.lines.filter((l) => l.event === "lead-start").at(-1)?.token;
  const pauseFrom = process.hrtime.bigint();
  lost.paused = true;
  lost.proc.kill("SIGSTOP");
  return { lost, lostToken, pauseFrom };
}

/**
 * Whether a process's lines show it leading on the promoted server: a term
 * started (`lead-start`) or renewed (`renewed`) at or after `healAt`, when the
 * harness saw the promotion. Either answer came from the promoted server: the
 * old primary was dead before the promotion began, and a term it granted
 * after replication froze is unknown to the promoted server, which refuses to
 * renew it. A renewal counts because a candidate may be elected on the
 * promoted server before `healAt`: the harness waits for two sentinels to
 * name it (sentinels learn a failover from each other, up to seconds apart),
 * a client only for the one it asks. Asking for a `lead-start` after `healAt`
 * alone then waited for the next election, which never came while that term
 * lived (chaos `redis-sentinel:failover-lagging:1479544978`, a leader elected
 * under 60 ms before `healAt`).
 */
export function ledSince(lines: readonly WorkerLine[], healAt: bigint): boolean {
  return lines.some(
    (l) => (l.event === "lead-start" || l.event === "renewed") && BigInt(l.t) >= healAt,
  );
}
