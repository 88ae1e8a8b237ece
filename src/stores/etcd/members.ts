/**
 * How calls are spread over the members of an etcd cluster (etcd3's
 * `faultHandling`). etcd3's default retries 3 times and opens a 5 s circuit per
 * member; Tenure retries by itself (the elector decides by its deadline), so:
 *
 * - a single member gets no policy at all;
 * - in a cluster, a call that fails with a recoverable error moves on to
 *   another member (at most once per other member, within the same deadline);
 * - a member that failed, or has not answered a call within `hedgeMs` (cut
 *   off: the connection is accepted, nothing answers), is passed over for a
 *   cooldown that doubles while it keeps failing (`cooldownMs` … 16×), and
 *   after it only reads go to it until one answers promptly, unless no other
 *   member is in good standing;
 * - a read marked {@link idempotent} is also sent to the next member when no
 *   answer came within `hedgeMs`, and the first answer wins;
 * - a write marked {@link resendable} (one whose second copy can only fail,
 *   and whose caller reads that failure right) is sent again while it is
 *   left unanswered: after `hedgeMs`, then after twice that, and so on, up to
 *   {@link RESEND_ATTEMPTS} copies within the call's deadline; the first
 *   answer wins. Other writes are never sent twice (a duplicate
 *   compare-and-set could answer "conflict" for a write that was made).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { IOptions } from "etcd3";

type FaultHandling = NonNullable<IOptions["faultHandling"]>;
type Policy = NonNullable<FaultHandling["global"]>;
type Attempt<T> = (ctx: { signal: AbortSignal }) => PromiseLike<T> | T;

/** How a call inside {@link idempotent} or {@link resendable} may be sent more than once. */
type Mark = "read" | "resend";
const marks = new AsyncLocalStorage<Mark>();

/** Most copies of one {@link resendable} write: at 0, 1, 3, 7 and 15 × `hedgeMs` (0–3.75 s at 250 ms). */
export const RESEND_ATTEMPTS = 5;

/** Filled by the member policy while a stream is opened: how to pass over the member it went to. */
interface StreamMember {
  suspect?: () => void;
}
const streams = new AsyncLocalStorage<StreamMember>();

/** Runs `fn` (etcd calls that only read) so that a slow member's answer is not waited for. */
export function idempotent<T>(fn: () => Promise<T>): Promise<T> {
  return marks.run("read", fn);
}

/**
 * Runs `fn` (an etcd write whose second copy can only fail, and whose caller
 * takes either answer as the same: the store's delete of a term past its ttl,
 * guarded on the term's create revision) so that a copy left unanswered is
 * sent again (see the module comment). When a cluster's raft leader dies, a
 * write that reached a follower was forwarded to the dead leader and lost:
 * it waited for its whole deadline (3 s) although the two members left had a
 * new leader within a second. Sent once, such a delete held every acquire of
 * its lease name (which first ends the overdue term) for those 3 s (chaos
 * group:etcd-cluster:rolling-restart:1610901752, three raft leaders killed in
 * a row: 10 of 64 partitions unworked 3.5–4.5 s after the heal). Acquires are
 * not resent: a put-if-absent's second copy finds the first one's key, and
 * the store then answers that term by more round trips; tried, it made the
 * restarts' recovery slower under load.
 */
export function resendable<T>(fn: () => Promise<T>): Promise<T> {
  return marks.run("resend", fn);
}

/**
 * Opens a stream with `open` (e.g. `leaseClient.leaseKeepAlive()`) and
 * returns it with `suspect`: a function that passes over the member the
 * stream went to, as a call that member left unanswered would (a stream
 * "succeeds" as soon as it is created, so the member policy cannot tell a
 * cut member by it). Without it, the stream opened to replace one left
 * unanswered went to a random member: the cut one again about one time in
 * three, and a renewal of a 1 s ttl then missed its deadline.
 */
export async function openOnMember<T>(
  open: () => Promise<T>,
): Promise<{ value: T; suspect: () => void }> {
  const slot: StreamMember = {};
  const value = await streams.run(slot, open);
  return { value, suspect: () => slot.suspect?.() };
}

/** A minimal cockatiel-shaped policy: etcd3 only calls `execute`. */
function policy(execute: <T>(fn: Attempt<T>) => Promise<T>): Policy {
  const none = () => ({ dispose() {} });
  return { execute, onSuccess: none, onFailure: none } as unknown as Policy;
}

/** Thrown by a member's cooldown instead of calling it (etcd3 then tries the next member). */
class MemberCoolingDownError extends Error {
  override name = "BrokenCircuitError";
}

export interface MemberPolicyOptions {
  hostCount: number;
  isRecoverable: (e: Error) => boolean;
  /** A member that has not answered within this is passed over, and an idempotent read goes to the next. */
  hedgeMs: number;
  /** First cooldown of a member that failed. */
  cooldownMs: number;
  watchBackoff: FaultHandling["watchBackoff"];
}

const MAX_COOLDOWN_FACTOR = 16;

export function memberPolicy(o: MemberPolicyOptions): FaultHandling {
  const signal = new AbortController().signal;
  const deadline = (e: unknown) =>
    e instanceof Error && e.constructor.name === "GRPCDeadlineExceededError";
  const retryable = (e: unknown) => e instanceof Error && o.isRecoverable(e) && !deadline(e);

  const sequential = async <T>(fn: Attempt<T>): Promise<T> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn({ signal });
      } catch (e) {
        if (attempt >= o.hostCount - 1 || !retryable(e)) throw e;
      }
    }
  };

  /**
   * Starts an attempt now, another whenever none answered for a while (reads:
   * `hedgeMs` each, at most one per member; resendable writes: `hedgeMs`,
   * doubling, at most {@link RESEND_ATTEMPTS}), or at once after a retryable
   * failure. The first answer wins.
   */
  const hedged = <T>(fn: Attempt<T>, mark: Mark): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const most = mark === "read" ? o.hostCount : RESEND_ATTEMPTS;
      const wait = (n: number) => (mark === "read" ? o.hedgeMs : o.hedgeMs * 2 ** (n - 1));
      let started = 0;
      let failed = 0;
      let settled = false;
      let noMore = false;
      let timer: NodeJS.Timeout | undefined;
      const start = () => {
        clearTimeout(timer);
        if (settled || noMore || started >= most) return;
        started++;
        if (started < most) timer = setTimeout(start, wait(started));
        Promise.resolve()
          .then(() => fn({ signal }))
          .then(
            (v) => {
              if (settled) return;
              settled = true;
              clearTimeout(timer);
              resolve(v);
            },
            (e: unknown) => {
              if (settled) return;
              failed++;
              if (retryable(e)) start();
              else {
                // Not a member's trouble (or no member left to try): start no more.
                noMore = true;
                clearTimeout(timer);
              }
              if (failed === started && (noMore || started >= most)) {
                settled = true;
                clearTimeout(timer);
                reject(e);
              }
            },
          );
      };
      start();
    });

  const global = policy(<T>(fn: Attempt<T>) => {
    const mark = marks.getStore();
    return o.hostCount > 1 && mark ? hedged(fn, mark) : sequential(fn);
  });

  const downUntil: number[] = [];
  const strikes: number[] = [];
  /** Another member that a write may go to: out of its cooldown and not suspect. */
  const othersUp = (i: number) =>
    downUntil.some((d, j) => j !== i && Date.now() >= d && strikes[j] === 0);
  const strike = (i: number) => {
    if (Date.now() < downUntil[i]!) return; // already passed over: one strike per cooldown
    strikes[i] = Math.min(strikes[i]! + 1, Math.log2(MAX_COOLDOWN_FACTOR) + 1);
    downUntil[i] = Date.now() + o.cooldownMs * 2 ** (strikes[i]! - 1);
  };
  const host = (): Policy => {
    if (o.hostCount <= 1) return policy(async (fn) => fn({ signal }));
    const i = downUntil.length;
    downUntil.push(0);
    strikes.push(0);
    return policy(async (fn) => {
      // A member that failed or was slow stays suspect until a read answers
      // promptly there: after its cooldown only reads (hedged, so never stuck
      // on it) go to it; writes go elsewhere while another member is up.
      const read = marks.getStore() === "read";
      if ((Date.now() < downUntil[i]! || (strikes[i]! > 0 && !read)) && othersUp(i)) {
        throw new MemberCoolingDownError("member cooling down");
      }
      const stream = streams.getStore();
      if (stream) stream.suspect = () => strike(i);
      let slow = false;
      const timer = setTimeout(() => {
        slow = true;
        strike(i);
      }, o.hedgeMs);
      try {
        const v = await fn({ signal });
        // Only a prompt read clears suspicion (a stream "succeeds" as soon as it is created).
        if (!slow && read) strikes[i] = 0;
        return v;
      } catch (e) {
        if (!slow && e instanceof Error && (o.isRecoverable(e) || deadline(e))) strike(i);
        throw e;
      } finally {
        clearTimeout(timer);
      }
    });
  };
  return { global, host, watchBackoff: o.watchBackoff };
}
