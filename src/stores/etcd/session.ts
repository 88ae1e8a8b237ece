/**
 * Session leases: one etcd lease per TTL (in whole seconds) that every lease
 * key an {@link EtcdStore} writes with that TTL is attached to, as in etcd's
 * own `concurrency.Session`. Renewing N terms then costs one keep-alive per
 * round trip, not N: keep-alives are coalesced, and a caller joins one only
 * if it was *sent* after the caller's call began (so the server-side lease
 * still outlives every caller's trust window `sentAt + ttl − margin`).
 */

/** Monotonic milliseconds (never the wall clock). */
export const monotonicMs = (): number => performance.now();

/**
 * How long a grant or keep-alive may be out before callers stop waiting on it
 * and send another (a quarter of the TTL): a call stuck on a member that is
 * down or catching up then cannot hold every term of the process with it
 * until its deadline. The new call usually goes to another member.
 */
export const staleAfterMs = (ttlSec: number): number => ttlSec * 250;

/** Sends one keep-alive; resolves with the lease's TTL in seconds afterwards (≤ 0: gone). */
export type SendKeepAlive = (leaseId: string) => Promise<number>;

export class SessionLease {
  /** When (monotonic ms) the newest keep-alive (or the grant) that succeeded was sent, and its TTL. */
  private lastOk: { sentAt: number; ttl: number };
  private inflight: { sentAt: number; p: Promise<number> } | undefined;
  private queued: Promise<number> | undefined;
  /** Set once a keep-alive said the lease is gone: the store grants a new session. */
  lost = false;

  constructor(
    readonly id: string,
    readonly ttlSec: number,
    grantSentAt: number,
    grantedTtl: number,
    private readonly send: SendKeepAlive,
  ) {
    this.lastOk = { sentAt: grantSentAt, ttl: grantedTtl };
  }

  /**
   * True once the lease has certainly expired by itself: nothing kept it
   * alive for its whole TTL since the last keep-alive that succeeded was sent
   * (an idle session; etcd may have dropped it a little earlier, never later
   * than this plus the round trip). The store then grants a new session
   * instead of attaching keys to a lease etcd no longer knows.
   */
  idleExpired(now = monotonicMs()): boolean {
    return !this.inflight && !this.queued && now - this.lastOk.sentAt >= this.lastOk.ttl * 1000;
  }

  /**
   * The lease's TTL (seconds) after a keep-alive sent at or after `since`
   * (monotonic ms); ≤ 0 when the lease is gone. Joins a keep-alive already
   * sent late enough, else queues one behind the one in flight, so at most
   * one is in flight and one waits, however many callers there are — unless
   * the one in flight is stale ({@link staleAfterMs}): then the queue stops
   * waiting for it and sends another.
   */
  refresh(since: number): Promise<number> {
    if (this.lost) return Promise.resolve(0);
    if (this.lastOk.sentAt >= since) return Promise.resolve(this.lastOk.ttl);
    const inflight = this.inflight;
    if (inflight && inflight.sentAt >= since) return inflight.p;
    if (this.queued) return this.queued;
    const now = monotonicMs();
    const staleAt = inflight ? inflight.sentAt + staleAfterMs(this.ttlSec) : now;
    if (staleAt <= now) return this.start();
    const queuedAt = now;
    const q = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, staleAt - now);
      timer.unref?.();
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      inflight!.p.then(done, done);
    }).then(() => {
      if (this.queued === q) this.queued = undefined;
      if (this.lost) return 0;
      if (this.lastOk.sentAt >= queuedAt) return this.lastOk.ttl;
      const cur = this.inflight;
      return cur && cur.sentAt >= queuedAt ? cur.p : this.start();
    });
    this.queued = q;
    return q;
  }

  private start(): Promise<number> {
    const sentAt = monotonicMs();
    const p = this.send(this.id).then((ttl) => {
      if (ttl <= 0) this.lost = true;
      else if (sentAt > this.lastOk.sentAt) this.lastOk = { sentAt, ttl };
      return ttl;
    });
    const entry = { sentAt, p };
    this.inflight = entry;
    const clear = () => {
      if (this.inflight === entry) this.inflight = undefined;
    };
    p.then(clear, clear);
    return p;
  }
}
