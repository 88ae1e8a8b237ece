/**
 * One long-lived LeaseKeepAlive stream shared by every keep-alive the store
 * sends (all its session leases). Opening a gRPC stream per keep-alive cost
 * about as much as a unary call (a new HTTP/2 stream, set up and torn down);
 * a message on an open stream costs a fraction of that, and the acquire that
 * sends one beside its transaction no longer waits on a stream being set up.
 *
 * etcd answers the requests of one stream in order, so answers are matched
 * to waiters first in, first out (and checked by lease ID). A stream that
 * fails, ends, answers out of order, or leaves a keep-alive unanswered past
 * its deadline is dropped: every keep-alive waiting on it fails (transient),
 * and the next one opens a new stream (usually to another member when the
 * old one is down). A keep-alive waiting longer than `staleMs` (a member that
 * accepted the stream and went away) makes the next one go out on a new
 * stream instead of queueing behind it.
 */
import { StoreError } from "../../errors.js";
import { monotonicMs } from "./session.js";

/** The duplex stream of `leaseClient.leaseKeepAlive()`, as far as it is used here. */
export interface KeepAliveStream {
  on(event: "data", fn: (res: { ID: string; TTL: string }) => void): unknown;
  on(event: "error", fn: (e: unknown) => void): unknown;
  on(event: "end", fn: () => void): unknown;
  write(req: { ID: string }): unknown;
  end(): unknown;
}

/** A stream as opened, with how to pass over its member (members.ts, openOnMember). */
export interface OpenedStream {
  stream: KeepAliveStream;
  /** Passes over the member the stream went to: it left a keep-alive unanswered. */
  suspect: () => void;
}

/** Times one keep-alive is sent again on a new stream (a cluster of three: each other member once). */
const MAX_RESENDS = 2;

interface Waiter {
  id: string;
  sentAt: number;
  resolve: (ttl: number) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

interface Channel {
  stream: Promise<KeepAliveStream>;
  /** Passes over the stream's member (a no-op until the stream is open). */
  suspect: () => void;
  waiters: Waiter[];
  dead: boolean;
}

export class KeepAliveChannel {
  private current: Channel | undefined;
  private readonly all = new Set<Channel>();
  private closed = false;

  constructor(private readonly open: () => Promise<OpenedStream>) {}

  /**
   * Sends one keep-alive for `leaseId`; resolves with the lease's TTL in
   * seconds afterwards (≤ 0: the lease is gone). Rejects when the stream
   * fails or no answer came by `deadline` (ms since the epoch).
   */
  send(leaseId: string, deadline: number, staleMs: number): Promise<number> {
    if (this.closed) {
      return Promise.reject(
        new StoreError("tenure etcd: store is closed", { transient: false, kind: "closed" }),
      );
    }
    // Unanswered after staleMs (its stream may sit on a member that is cut
    // off), or failed: the same keep-alive goes out again on a new stream,
    // usually to another member, and the first answer counts. Keep-alives are
    // idempotent.
    return new Promise<number>((resolve, reject) => {
      let pending = 0;
      let resends = 0;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = () => {
        settled = true;
        clearTimeout(timer);
      };
      const canResend = () =>
        !settled && !this.closed && resends < MAX_RESENDS && Date.now() < deadline;
      const attempt = (fresh: boolean) => {
        pending++;
        clearTimeout(timer);
        if (canResend()) {
          timer = setTimeout(() => {
            if (canResend()) {
              resends++;
              attempt(true);
            }
          }, staleMs);
          timer.unref?.();
        }
        this.sendOnce(leaseId, deadline, staleMs, fresh).then(
          (ttl) => {
            if (settled) return;
            settle();
            resolve(ttl);
          },
          (e: unknown) => {
            pending--;
            if (settled || pending > 0) return;
            if (canResend()) {
              resends++;
              attempt(true);
              return;
            }
            settle();
            reject(e);
          },
        );
      };
      attempt(false);
    });
  }

  private sendOnce(
    leaseId: string,
    deadline: number,
    staleMs: number,
    fresh: boolean,
  ): Promise<number> {
    let ch = this.current;
    const oldest = ch?.waiters[0];
    const stale = oldest !== undefined && monotonicMs() - oldest.sentAt >= staleMs;
    if (fresh || !ch || ch.dead || stale) {
      // A live stream left unanswered: its member is passed over, so the new
      // stream goes to another one.
      if (ch && !ch.dead && (stale || (fresh && ch.waiters.length > 0))) ch.suspect();
      ch = this.openChannel();
    }
    const c = ch;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.drop(
            c,
            new StoreError("tenure etcd: keep-alive: no answer before the deadline", {
              transient: true,
              kind: "timeout",
              code: "DEADLINE_EXCEEDED",
            }),
          ),
        Math.max(1, deadline - Date.now()),
      );
      timer.unref?.();
      c.waiters.push({ id: leaseId, sentAt: monotonicMs(), resolve, reject, timer });
      c.stream.then(
        (s) => {
          if (!c.dead) s.write({ ID: leaseId });
        },
        (e: unknown) => this.drop(c, e),
      );
    });
  }

  private openChannel(): Channel {
    const opened = this.open();
    const c: Channel = {
      stream: opened.then((o) => o.stream),
      suspect: () => {},
      waiters: [],
      dead: false,
    };
    opened.then(
      (o) => {
        c.suspect = o.suspect;
      },
      () => {},
    );
    this.current = c;
    this.all.add(c);
    c.stream.then(
      (s) => {
        if (c.dead) {
          endQuietly(s);
          return;
        }
        s.on("data", (res) => {
          const w = c.waiters.shift();
          if (!w) return;
          clearTimeout(w.timer);
          if (String(res.ID) !== String(w.id)) {
            w.reject(new Error(`keep-alive answer for lease ${res.ID}, expected ${w.id}`));
            this.drop(c, new Error("keep-alive stream answered out of order"));
            return;
          }
          w.resolve(Number(res.TTL));
          this.retire(c);
        });
        s.on("error", (e) => this.drop(c, e));
        s.on("end", () =>
          this.drop(
            c,
            new StoreError("tenure etcd: keep-alive stream ended", {
              transient: true,
              kind: "connection",
            }),
          ),
        );
      },
      () => {
        /* reported to the waiters by send() */
      },
    );
    return c;
  }

  /** A replaced channel with nothing left to answer is ended. */
  private retire(c: Channel): void {
    if (c !== this.current && c.waiters.length === 0) this.drop(c, undefined);
  }

  private drop(c: Channel, e: unknown): void {
    if (c.dead) return;
    c.dead = true;
    this.all.delete(c);
    if (this.current === c) this.current = undefined;
    for (const w of c.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    c.stream.then(endQuietly, () => {});
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.all]) {
      this.drop(
        c,
        new StoreError("tenure etcd: store is closed", { transient: false, kind: "closed" }),
      );
    }
  }
}

function endQuietly(s: KeepAliveStream): void {
  s.on("error", () => {});
  try {
    s.end();
  } catch {
    /* already gone */
  }
}
