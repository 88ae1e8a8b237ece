/**
 * The invariants of the simulation, judged from the recorded history: what
 * each process asked the store and when, what the store answered and
 * applied, and what leader work actually ran — never from a flag the code
 * under test keeps about itself.
 *
 * The trust window of a term is rebuilt here from the request history, by the
 * contract (docs/ARCHITECTURE.md): an acquire or renew sent at `s` whose
 * success reply was delivered before the current window ended opens or
 * extends the window to `s + ttl − margin`; a "not yours" reply, a release
 * being sent, or a crash closes it.
 */

export type ViolationKind =
  | "two-holders"
  | "token-order"
  | "fenced-order"
  | "outside-window"
  | "stale-service"
  | "liveness"
  | "log-repeat";

export class Violation extends Error {
  override name = "Violation";
  constructor(
    readonly kind: ViolationKind,
    message: string,
    readonly at: number,
  ) {
    super(`${kind}: ${message}`);
  }
}

interface TermModel {
  readonly key: string;
  readonly inc: number;
  readonly holder: string;
  readonly token: bigint;
  readonly start: number;
  end: number;
  closed: boolean;
  first: number | null;
  last: number | null;
  /** The store's lease of this term was force-released (break-glass): its holder may trust on until it learns. */
  forced: boolean;
}

interface Instance {
  readonly id: number;
  readonly inc: number;
  readonly token: bigint;
  readonly startedAt: number;
  stoppedAt: number | null;
  dead: boolean;
}

export interface CheckerTiming {
  readonly ttlMs: number;
  readonly safetyMarginMs: number;
  /** The smallest backoff step any retry loop of the workload uses (after jitter). */
  readonly minLogStepMs: number;
}

/** Log fields that count attempts or delays: a line that differs only in them is "the same line". */
const COUNTER_FIELDS = new Set(["attempt", "suppressed", "delayMs", "latencyMs", "repeats"]);

export class Checker {
  private readonly terms = new Map<string, TermModel>();
  private lastGrant: bigint | null = null;
  private maxAccepted: bigint | null = null;
  private readonly instances = new Map<number, Instance>();
  private nextInstance = 1;
  private readonly resumedAt = new Map<number, number>();
  private readonly paused = new Set<number>();
  private readonly logLast = new Map<string, number>();
  private readonly notifiedAt = new Map<number, number>();
  private readonly forcedTokens = new Set<bigint>();
  private readonly ring: string[] = [];
  /** Counters for the report. */
  readonly counts = {
    grants: 0,
    trustChecks: 0,
    fencedAccepted: 0,
    fencedRejected: 0,
    serviceStarts: 0,
    livenessChecks: 0,
  };

  constructor(private readonly timing: CheckerTiming) {}

  /** Adds a line to the recent-history ring (printed with a failure). */
  note(now: number, line: string): void {
    this.ring.push(`${now} ${line}`);
    if (this.ring.length > 120) this.ring.shift();
  }

  recent(): string[] {
    return [...this.ring];
  }

  private window(): number {
    return this.timing.ttlMs - this.timing.safetyMarginMs;
  }

  // ------------------------------------------------------------ store history

  onAcquireReply(inc: number, holder: string, token: bigint, sentAt: number, now: number): void {
    const end = sentAt + this.window();
    const key = `${inc}:${token}`;
    if (now >= end) {
      this.note(now, `#${inc} acquire reply token ${token} arrived after its window (${end})`);
      return;
    }
    const seen = this.terms.get(key);
    if (seen) {
      // The store answered a term this process already had (an acquire of a lease its holder
      // holds live goes on with that term). One still open is extended as by a renewal; one
      // that ended stays ended: a process never leads a term again once it has ended it.
      if (!seen.closed) seen.end = Math.max(seen.end, end);
      return;
    }
    this.terms.set(key, {
      key,
      inc,
      holder,
      token,
      start: now,
      end,
      closed: false,
      first: null,
      last: null,
      forced: this.forcedTokens.has(token),
    });
  }

  onRenewReply(inc: number, token: bigint, sentAt: number, now: number, renewed: boolean): void {
    const m = this.terms.get(`${inc}:${token}`);
    if (!m || m.closed) return;
    if (now >= m.end) {
      m.closed = true;
      return;
    }
    if (renewed) m.end = sentAt + this.window();
    else this.close(m, now);
  }

  onReleaseSent(inc: number, token: bigint, now: number): void {
    const m = this.terms.get(`${inc}:${token}`);
    if (m) this.close(m, now);
  }

  private close(m: TermModel, now: number): void {
    m.end = Math.min(m.end, now);
    m.closed = true;
  }

  onCrash(inc: number, now: number): void {
    for (const m of this.terms.values()) if (m.inc === inc) this.close(m, now);
    for (const i of this.instances.values()) if (i.inc === inc) i.dead = true;
    this.paused.delete(inc);
  }

  /** A store notification reached process `inc`: it may wake a loop early (event-driven, not a tight loop). */
  onNotify(inc: number, now: number): void {
    this.notifiedAt.set(inc, now);
    this.note(now, `#${inc} notified`);
  }

  onPause(inc: number): void {
    this.paused.add(inc);
  }

  onResume(inc: number, now: number): void {
    this.paused.delete(inc);
    this.resumedAt.set(inc, now);
  }

  /** The store granted `token` (applied, whether or not the reply ever arrives). */
  onGrant(token: bigint, now: number): void {
    this.counts.grants += 1;
    const prev = this.lastGrant;
    this.lastGrant = token;
    if (prev !== null && token <= prev) {
      throw new Violation(
        "token-order",
        `the store granted token ${token} after token ${prev}: a new term must have a larger token`,
        now,
      );
    }
  }

  /** The store accepted a fenced write (checkpoint or resource) with `token`. */
  onFencedWrite(token: bigint, key: string, accepted: boolean, now: number): void {
    if (!accepted) {
      this.counts.fencedRejected += 1;
      return;
    }
    this.counts.fencedAccepted += 1;
    const max = this.maxAccepted;
    if (max !== null && token < max) {
      throw new Violation(
        "fenced-order",
        `fenced write to ${key} with token ${token} accepted after one with token ${max}`,
        now,
      );
    }
    if (max === null || token > max) this.maxAccepted = token;
  }

  /** A forced release freed the lease of the term with `token` (null: nobody held it). */
  onForceRelease(token: bigint | null, now: number): void {
    if (token === null) return;
    this.forcedTokens.add(token);
    for (const m of this.terms.values()) if (m.token === token) m.forced = true;
    this.note(now, `force-release of token ${token}`);
  }

  // ------------------------------------------------------------- leader work

  /**
   * Process `inc` acted as leader of `token` now (`kind`: probe of
   * isLeader(), tick, service start, stream run). It must be inside that
   * term's trust window, and no other term may be trusted at the same time.
   */
  trust(inc: number, holder: string, token: bigint, now: number, kind: string): void {
    this.counts.trustChecks += 1;
    const key = `${inc}:${token}`;
    const m = this.terms.get(key);
    if (!m || now < m.start || now >= m.end) {
      throw new Violation(
        "outside-window",
        m
          ? `${kind} by ${holder} (#${inc}) with token ${token} at ${now}, outside its trust window [${m.start}, ${m.end})`
          : `${kind} by ${holder} (#${inc}) with token ${token} at ${now}, but no trust window was ever opened for it`,
        now,
      );
    }
    if (m.first === null) m.first = now;
    m.last = now;
    for (const o of this.terms.values()) {
      if (o === m || o.last === null || o.forced || m.forced) continue;
      if (o.last >= m.first && o.first! <= now) {
        throw new Violation(
          "two-holders",
          `${holder} (#${inc}, token ${token}) trusts the lease at ${now} while ${o.holder} (#${o.inc}, token ${o.token}) trusted it from ${o.first} to ${o.last}`,
          now,
        );
      }
    }
  }

  /** A service start is about to run for `token`. */
  serviceStartCalled(inc: number, holder: string, token: bigint, now: number): void {
    this.counts.serviceStarts += 1;
    for (const m of this.terms.values()) {
      if (m.inc === inc && m.token > token && m.start <= now) {
        throw new Violation(
          "stale-service",
          `${holder} (#${inc}) started the service for token ${token} while its newer term ${m.token} exists (a stale start)`,
          now,
        );
      }
    }
    this.trust(inc, holder, token, now, "service start");
  }

  /** A service start succeeded: one instance now runs. Returns its id. */
  serviceStarted(inc: number, token: bigint, now: number): number {
    const id = this.nextInstance++;
    this.instances.set(id, { id, inc, token, startedAt: now, stoppedAt: null, dead: false });
    return id;
  }

  /** `stop` was called by the runner of term `termToken` for instance `id`. */
  serviceStopCalled(inc: number, id: number, termToken: bigint, now: number): void {
    const i = this.instances.get(id);
    if (!i) throw new Violation("stale-service", `stop of unknown instance ${id}`, now);
    if (i.inc !== inc || i.token !== termToken) {
      throw new Violation(
        "stale-service",
        `the runner of token ${termToken} (#${inc}) stopped instance ${id} started by token ${i.token} (#${i.inc})`,
        now,
      );
    }
    if (i.stoppedAt !== null) {
      throw new Violation(
        "stale-service",
        `instance ${id} (token ${i.token}) stopped twice (${i.stoppedAt}, ${now})`,
        now,
      );
    }
    i.stoppedAt = now;
    this.instances.delete(id);
  }

  /**
   * Called before the clock leaves `now`: every event due at `now` has run.
   * A running service instance whose term's window has ended must have been
   * stopped by now (its process was not paused meanwhile).
   */
  beforeAdvance(now: number): void {
    for (const i of this.instances.values()) {
      if (i.dead || this.paused.has(i.inc)) continue;
      const m = this.terms.get(`${i.inc}:${i.token}`);
      const end = m ? m.end : i.startedAt;
      if (now >= end && now >= i.startedAt && now >= (this.resumedAt.get(i.inc) ?? 0)) {
        throw new Violation(
          "stale-service",
          `instance ${i.id} started at ${i.startedAt} by token ${i.token} (#${i.inc}) still runs at ${now}; its term's window ended at ${end}`,
          now,
        );
      }
    }
    if (this.terms.size > 64) {
      const old = now - 10 * this.timing.ttlMs;
      for (const [k, m] of this.terms) if (m.end < old && (m.last ?? 0) < old) this.terms.delete(k);
    }
  }

  /** One log line of process `inc`. The same line must not repeat faster than the smallest backoff step. */
  log(inc: number, level: string, msg: string, fields: Record<string, unknown>, now: number): void {
    // Ticks run on their schedule, not in a backoff loop: after a stall the fixed-rate grid may
    // put two runs (and their log lines) close together. Every other repeated line is a retry.
    if (msg.startsWith("tick ")) return;
    const parts: string[] = [];
    for (const k of Object.keys(fields).sort()) {
      if (COUNTER_FIELDS.has(k)) continue;
      const v = fields[k];
      parts.push(`${k}=${v instanceof Error ? v.message : String(v)}`);
    }
    const line = `${level} ${msg} ${parts.join(" ")}`;
    const key = `${inc}|${line}`;
    const prev = this.logLast.get(key);
    this.logLast.set(key, now);
    // A release notification cuts any wait short by design (DESIGN §2): a repeat right after
    // one is event-driven, not a loop. It counts if it arrived since the call behind the
    // previous line was sent (at most one store timeout, ttl here, before that line).
    const woken = (this.notifiedAt.get(inc) ?? -Infinity) >= (prev ?? 0) - this.timing.ttlMs;
    if (prev !== undefined && now - prev < this.timing.minLogStepMs && !woken) {
      throw new Violation(
        "log-repeat",
        `#${inc} logged "${line}" at ${prev} and again at ${now} (< ${this.timing.minLogStepMs} ms, one backoff step)`,
        now,
      );
    }
    if (this.logLast.size > 4096) {
      for (const [k, at] of this.logLast)
        if (at < now - 10 * this.timing.ttlMs) this.logLast.delete(k);
    }
  }

  livenessChecked(): void {
    this.counts.livenessChecks += 1;
  }
}
