/**
 * Terms this store started and has not seen end, and the sweep that ends
 * those nobody renewed for a whole ttl. Every key shares a session lease that
 * lives on for the store's other terms, so without the sweep a term its
 * elector gave up on (after a failed renew, a failed release) would outlive
 * its ttl; the store ends it one ttl after its last acquire or renew began,
 * as a per-key lease would.
 */
import type { Logger } from "../../logger.js";
import type { LeaseRef } from "../../store/types.js";
import { monotonicMs } from "./session.js";

/** How often the store looks for terms of its own that ended without a release. */
const SWEEP_INTERVAL_MS = 100;

/** A term this store started and has not seen end: what the sweeper needs to end it by ttl. */
export interface Held {
  readonly holder: string;
  readonly token: bigint;
  ttlMs: number;
  /** Monotonic ms at which the newest successful acquire/renew of the term began. */
  touchedAt: number;
  /** Set once the store decided the term is over: its key is being deleted. */
  ending?: Promise<void>;
}

/** True when `h` is past its ttl at `now` (or already being ended). */
export function overdue(h: Held, now: number): boolean {
  return h.ending !== undefined || now >= h.touchedAt + h.ttlMs;
}

export class HeldTerms {
  /** Terms this store started, by lease name. */
  private readonly held = new Map<string, Held>();
  /**
   * Renewals in flight, by lease name: the sweeper leaves those names alone
   * meanwhile. Counted by name, not on the held term: a renewal can begin
   * before its term is recorded here. An acquire whose caller gave up (sent
   * during a black hole, answered 1.6 s later) records the term under its own
   * start, already past its ttl, while the holder's retry, finding its own
   * term, renews it; the sweep then deleted the key under that renewal, which
   * answered success: the elector led a term its store had just ended, and
   * another member took it 53 ms later (chaos group:etcd:blackhole:2136929060,
   * two members trusting a partition for 150–230 ms).
   */
  private readonly renewing = new Map<string, number>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly background = new Set<Promise<void>>();
  private closed = false;

  constructor(
    /**
     * Deletes the key of a term, guarded on its token and holder (a newer
     * term is never touched).
     */
    private readonly deleteTerm: (name: string, h: Held) => Promise<unknown>,
    private readonly logger: Logger | undefined,
    /** The message of a failed delete, for the log (credentials scrubbed). */
    private readonly describe: (e: unknown) => string,
  ) {}

  /** The held term of `name`, if any. */
  get(name: string): Held | undefined {
    return this.held.get(name);
  }

  /** The held term of `name` when it is exactly `lease`. */
  mine(lease: Pick<LeaseRef, "name" | "holder" | "token">): Held | undefined {
    const h = this.held.get(lease.name);
    return h !== undefined && h.token === lease.token && h.holder === lease.holder ? h : undefined;
  }

  /** Records that `lease` was acquired or renewed by a call that began at `since`. */
  hold(lease: LeaseRef, ttlMs: number, since: number): void {
    const h = this.held.get(lease.name);
    if (h && h.token === lease.token && h.holder === lease.holder) {
      if (since > h.touchedAt) h.touchedAt = since;
      h.ttlMs = ttlMs;
    } else if (!h || h.token < lease.token) {
      this.held.set(lease.name, {
        holder: lease.holder,
        token: lease.token,
        ttlMs,
        touchedAt: since,
      });
    }
    if (!this.sweepTimer && !this.closed) {
      this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
      this.sweepTimer.unref();
    }
  }

  /**
   * A renewal of `name` begins: until the returned function is called, no
   * term of `name` is swept (one the renewal finds recorded past its ttl is
   * ended by the renewal itself, before it begins).
   */
  begin(name: string): () => void {
    this.renewing.set(name, (this.renewing.get(name) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.renewing.get(name) ?? 1) - 1;
      if (n > 0) this.renewing.set(name, n);
      else this.renewing.delete(name);
    };
  }

  /** Forgets the term of `name` (only the one with `token`, when given). */
  forget(name: string, token?: bigint): void {
    const h = this.held.get(name);
    if (h && (token === undefined || h.token === token)) this.held.delete(name);
  }

  /** Ends every term of this store that nobody renewed for a whole ttl. */
  private sweep(): void {
    const now = monotonicMs();
    for (const [name, h] of this.held) {
      if (!this.renewing.has(name) && !h.ending && overdue(h, now)) void this.end(name, h);
    }
    if (this.held.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /**
   * Deletes the key of a term whose ttl ran out here, guarded on its token and
   * holder (a newer term is never touched). Its session lease lives on for the
   * store's other terms, so without this the key would outlive its ttl. A
   * failed delete is tried again by the next sweep. Never rejects.
   */
  end(name: string, h: Held): Promise<void> {
    if (h.ending) return h.ending;
    const p = this.deleteTerm(name, h).then(
      () => {
        if (this.held.get(name) === h) this.held.delete(name);
      },
      (e: unknown) => {
        this.logger?.debug("etcd: deleting a term past its ttl failed; trying again", {
          lease: name,
          token: h.token,
          err: this.describe(e),
        });
        // Still past its ttl: the next sweep tries again, renewals keep refusing it.
        h.ending = undefined;
      },
    );
    h.ending = p;
    const tracked = p.finally(() => this.background.delete(tracked));
    this.background.add(tracked);
    return p;
  }

  /** Before reading or taking `name`: a term of this store past its ttl is ended first. */
  async settle(name: string): Promise<void> {
    const h = this.held.get(name);
    if (h && !this.renewing.has(name) && overdue(h, monotonicMs())) await this.end(name, h);
  }

  /** Stops the sweep and waits for the deletes in flight. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    await Promise.allSettled([...this.background]);
  }
}
