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
   * The lease's TTL (seconds) after a keep-alive sent at or after `since`
   * (monotonic ms); ≤ 0 when the lease is gone. Joins a keep-alive already
   * sent late enough, else queues one behind the one in flight, so at most
   * one is in flight and one waits, however many callers there are.
   */
  refresh(since: number): Promise<number> {
    if (this.lost) return Promise.resolve(0);
    if (this.lastOk.sentAt >= since) return Promise.resolve(this.lastOk.ttl);
    if (this.inflight && this.inflight.sentAt >= since) return this.inflight.p;
    if (this.queued) return this.queued;
    if (!this.inflight) return this.start();
    const q = this.inflight.p
      .then(
        () => undefined,
        () => undefined,
      )
      .then(() => {
        this.queued = undefined;
        return this.start();
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
