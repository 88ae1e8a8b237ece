/**
 * The store's shared session leases: one etcd lease per TTL in whole seconds,
 * granted on first use and kept alive over one keep-alive stream (see
 * session.ts for how keep-alives are coalesced).
 */
import type { Etcd3 } from "etcd3";
import { KeepAliveChannel, type KeepAliveStream } from "./keepalive.js";
import { openOnMember } from "./members.js";
import { monotonicMs, SessionLease, staleAfterMs } from "./session.js";

/** gRPC call options the store sets: an absolute deadline (ms since the epoch). */
export type CallOptions = { deadline: number };

export class SessionPool {
  /** Session leases by TTL in seconds, and grants of them in flight. */
  private readonly sessions = new Map<number, SessionLease>();
  private readonly granting = new Map<number, { sentAt: number; p: Promise<SessionLease> }>();
  /** The one keep-alive stream of every session lease (opened on first use, without a deadline). */
  private readonly keepAlives: KeepAliveChannel;

  constructor(
    private readonly client: Pick<Etcd3, "leaseClient">,
    /** A fresh deadline for a call the pool makes on its own (a keep-alive, a revoke). */
    private readonly deadline: () => CallOptions,
  ) {
    this.keepAlives = new KeepAliveChannel(async () => {
      const { value, suspect } = await openOnMember(() => this.client.leaseClient.leaseKeepAlive());
      return { stream: value as unknown as KeepAliveStream, suspect };
    });
  }

  /**
   * The session lease of `ttlSec` seconds: the live one, or a newly granted
   * one. Callers join a grant in flight unless it has been out for longer
   * than {@link staleAfterMs} (stuck on a member that is down or catching
   * up): then a new grant goes out, usually to another member, and whichever
   * answers first becomes the session (a later one is revoked, unused).
   */
  async session(ttlSec: number, o: CallOptions): Promise<SessionLease> {
    const s = this.sessions.get(ttlSec);
    if (s && !s.lost) {
      if (!s.idleExpired()) return s;
      s.lost = true;
    }
    const inflight = this.granting.get(ttlSec);
    if (inflight && monotonicMs() - inflight.sentAt < staleAfterMs(ttlSec)) return inflight.p;
    const sentAt = monotonicMs();
    const entry = {
      sentAt,
      p: this.client.leaseClient.leaseGrant({ TTL: ttlSec, ID: 0 }, o).then((r) => {
        const live = this.sessions.get(ttlSec);
        if (live && !live.lost && live.id !== r.ID) {
          // Another grant answered first: this lease carries nothing.
          this.client.leaseClient.leaseRevoke({ ID: r.ID }, this.deadline()).catch(() => {});
          return live;
        }
        const fresh = new SessionLease(r.ID, ttlSec, sentAt, Number(r.TTL), (id) =>
          this.keepAliveOnce(id, ttlSec, this.deadline()),
        );
        this.sessions.set(ttlSec, fresh);
        return fresh;
      }),
    };
    const clear = () => {
      if (this.granting.get(ttlSec) === entry) this.granting.delete(ttlSec);
    };
    entry.p.then(clear, clear);
    this.granting.set(ttlSec, entry);
    return entry.p;
  }

  /**
   * The session lease of `ttlSec` seconds if one is live (not known lost, not
   * idle past its TTL), without granting one. A renewal sends this session's
   * keep-alive beside its read, so a renewal is one round trip. That is
   * safe in either order on the server: the renewal succeeds only if the
   * read shows the term's key on this very session and the keep-alive, sent
   * after the renewal began, finds the session alive. A keep-alive applied
   * before the read: the key was attached to a session that lives at least
   * the TTL from the keep-alive, so from the renewal's start. Applied after
   * the read: an etcd lease that expired in between took the key with it and
   * the keep-alive answers TTL 0 (the term is lost); otherwise the key, on
   * the session at the read, lives as long as the session again (a forced
   * delete in between is the same race as with a keep-alive sent after the
   * read). A key found on another lease is moved onto the session after the
   * keep-alive: it lives as long as the session from then on.
   */
  live(ttlSec: number): SessionLease | undefined {
    const s = this.sessions.get(ttlSec);
    return s && !s.lost && !s.idleExpired() ? s : undefined;
  }

  /**
   * One keep-alive on a lease, on the store's shared keep-alive stream;
   * returns its TTL in seconds afterwards (0 = expired or revoked).
   */
  private keepAliveOnce(leaseId: string, ttlSec: number, o: CallOptions): Promise<number> {
    return this.keepAlives.send(leaseId, o.deadline, staleAfterMs(ttlSec));
  }

  /** Closes the keep-alive stream. */
  close(): void {
    this.keepAlives.close();
  }
}
