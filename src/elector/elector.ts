import { raceDeadline, TIMED_OUT } from "../async.js";
import { backoffDelay } from "../backoff.js";
import {
  type DemotionReason,
  errorMessage,
  isStoreError,
  LifecycleError,
  StoreError,
  TermEndedError,
  toError,
} from "../errors.js";
import { type Disposable, describeListenerError, TypedEmitter } from "../events.js";
import type { LeaderContext, LeaderHooks } from "../leader/hooks.js";
import type { ServiceDefinition } from "../leader/service.js";
import type { StreamDefinition } from "../leader/stream.js";
import type { CronOptions, EveryOptions, TickFn } from "../leader/tick.js";
import { LeaderWork } from "../leader/work.js";
import { RepeatLimiter } from "../logger.js";
import type { RenewOutcome } from "../renewal/outcome.js";
import { renewerFor } from "../renewal/registry.js";
import type { LeaseInfo, LeaseRef, RenewResult, Unwatch } from "../store/types.js";
import { withHealthJson } from "./health-json.js";
import {
  type ElectorOptions,
  type ResolvedElectorOptions,
  resolveElectorOptions,
} from "./options.js";
import type {
  Demotion,
  ElectorEvents,
  ElectorHealth,
  ElectorState,
  ElectorStats,
  LeaderInfo,
  Term,
} from "./types.js";
import { waitForLeadership } from "./wait.js";

/**
 * Internal state of one term. `sentAt`: when the request that last started or
 * extended the trust window was sent; `validUntil` is the end of that window
 * (`sentAt + ttl − margin`). Both in monotonic ms.
 */
interface LeaderTerm {
  readonly term: Term;
  readonly lease: LeaseRef;
  sentAt: number;
  readonly controller: AbortController;
  validUntil: number;
}

type StoreCall<T> = { ok: true; value: T } | { ok: false; error: StoreError };

const RENEWED: RenewResult = Object.freeze({ renewed: true });

/**
 * One process's campaign for one lease. See docs/ARCHITECTURE.md for the state
 * diagram, the trust window and the term rules.
 */
export class Elector {
  readonly options: ResolvedElectorOptions;
  private readonly events: TypedEmitter<ElectorEvents>;
  private readonly work: LeaderWork;
  private readonly hooks: LeaderHooks[] = [];

  private state: ElectorState = "idle";
  private current: LeaderTerm | null = null;
  private knownLeader: LeaderInfo | null = null;
  private loop: Promise<void> | null = null;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private wakeController = new AbortController();
  private unwatch: Unwatch | null = null;
  private cooldownUntil = 0;
  private termEnding: Promise<void> = Promise.resolve();
  /** A read confirming a notified loss is in flight; `lossCheckAgain`: another notification came meanwhile. */
  private lossCheck: Promise<unknown> | null = null;
  private lossCheckAgain = false;

  // health bookkeeping
  private startedAt = 0;
  private lastContactAt: number | null = null;
  private consecutiveFailures = 0;
  /** When the loop is next expected to run; overdue by more than ttl ⇒ stuck. */
  private expectedWakeAt = 0;
  private readonly repeat = new RepeatLimiter();
  private readonly statsData: ElectorStats = {
    elections: 0,
    demotions: { lost: 0, expired: 0, resigned: 0, stopped: 0 },
    renewals: 0,
    storeErrors: { transient: 0, fatal: 0 },
  };

  constructor(opts: ElectorOptions) {
    this.options = resolveElectorOptions(opts);
    this.events = new TypedEmitter<ElectorEvents>((event, err) => {
      this.options.logger.error(describeListenerError(event, err), { lease: this.options.name });
      if (event !== "error") this.events.emit("error", toError(err));
    });
    const ctx: LeaderContext = {
      name: this.options.name,
      holderId: this.options.holderId,
      store: this.options.store,
      clock: this.options.clock,
      logger: this.options.logger,
      random: this.options.random,
      isLeader: () => this.isLeader(),
      enforceDeadline: () => this.enforceDeadline(),
      term: () => this.term(),
      resignTerm: (t) => this.resignTerm(t, "resigned"),
      confirmTerm: (t) => this.confirmTerm(t),
      reportError: (e) => this.events.emit("error", e),
    };
    this.work = new LeaderWork(ctx);
    this.hooks.push(this.work);
  }

  /** The lease name. */
  get name(): string {
    return this.options.name;
  }
  /** This process's holder id. */
  get holderId(): string {
    return this.options.holderId;
  }

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<K extends keyof ElectorEvents>(
    event: K,
    fn: (payload: ElectorEvents[K]) => unknown,
  ): Disposable {
    return this.events.on(event, fn);
  }
  /** Subscribes for one event only. */
  once<K extends keyof ElectorEvents>(
    event: K,
    fn: (payload: ElectorEvents[K]) => unknown,
  ): Disposable {
    return this.events.once(event, fn);
  }
  off<K extends keyof ElectorEvents>(event: K, fn: (payload: ElectorEvents[K]) => unknown): void {
    this.events.off(event, fn);
  }

  /** Attaches extra leader work (advanced; services and ticks use this internally). */
  attach(hooks: LeaderHooks): Disposable {
    this.hooks.push(hooks);
    const t = this.current;
    if (t && this.isLeader()) this.safeCall(() => hooks.onElected(t.term));
    return () => {
      const i = this.hooks.indexOf(hooks);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /** The leader-work registry (services, ticks, streams) of this elector. */
  get leaderWork(): LeaderWork {
    return this.work;
  }

  // ------------------------------------------------ leader work (src/leader)

  /** Runs `fn` every `ms` while leader; see LeaderWork.every. Returns an unregister function. */
  every(ms: number, fn: TickFn, opts?: EveryOptions): () => void {
    return this.work.every(ms, fn, opts);
  }
  /** Runs `fn` on a cron schedule while leader; see LeaderWork.cron. Returns an unregister function. */
  cron(expr: string, fn: TickFn, opts?: CronOptions): () => void {
    return this.work.cron(expr, fn, opts);
  }
  /** Registers a leader-only service; see LeaderWork.service. Returns an unregister function. */
  service<T>(def: ServiceDefinition<T>): () => void {
    return this.work.service(def);
  }
  /** Registers leader-held long-running work with a recovery strategy; see LeaderWork.stream. Returns an unregister function. */
  stream(def: StreamDefinition): () => void {
    return this.work.stream(def);
  }

  /** Starts campaigning. Resolves once the loop is running (not when elected). Idempotent. */
  async start(): Promise<void> {
    if (this.loop) return;
    if (this.stopping) throw new LifecycleError("elector", "cannot start after stop()");
    this.startedAt = this.options.clock.now();
    this.expectedWakeAt = this.startedAt;
    this.state = "follower";
    const { store } = this.options;
    if (store.notifies && store.watch) {
      try {
        this.unwatch = await store.watch(this.options.name, (e) => {
          // Loss is pushed, not polled: a leader told of any change confirms it still holds the lease.
          if (this.current) this.checkLoss();
          else if (e.type === "released") this.wake();
        });
      } catch (e) {
        this.options.logger.warn("cannot watch lease; falling back to polling", {
          lease: this.options.name,
          err: e,
        });
      }
    }
    this.loop = this.run().catch((e) => {
      // The loop is written not to throw; if it does, report it instead of crashing.
      this.options.logger.error("elector loop crashed", { lease: this.options.name, err: e });
      this.events.emit("error", toError(e));
    });
  }

  /**
   * True while this process holds the lease and its trust window has not
   * passed, computed now against the clock. A leader found past its deadline
   * demotes itself (reason `expired`) before this returns false.
   */
  isLeader(): boolean {
    this.checkDeadline();
    const cur = this.current;
    return cur !== null && this.options.clock.now() < cur.validUntil;
  }

  /**
   * Enforces the trust window now: a leader whose window has passed demotes
   * (reason `expired`, leader work aborted) before this returns. Returns
   * whether this process still leads. Call it from timers that must react
   * right after a stall; `isLeader()` gives the same answer.
   */
  enforceDeadline(): boolean {
    return this.isLeader();
  }

  /** The current term if leader (clock-checked), else null. */
  term(): Term | null {
    return this.isLeader() ? this.current!.term : null;
  }

  /** The last known leader of the lease (this process included). */
  leader(): LeaderInfo | null {
    this.checkDeadline();
    return this.knownLeader;
  }

  /** Counters for metrics. */
  stats(): Readonly<ElectorStats> {
    return this.statsData;
  }

  /** Health snapshot. Side-effect free: it reports a stuck leader rather than fixing it. */
  health(): ElectorHealth {
    const now = this.options.clock.now();
    const cur = this.current;
    let reason: string | null = null;
    let live = true;
    if (this.state !== "idle" && this.state !== "stopped") {
      if (cur && now >= cur.validUntil) {
        live = false;
        reason = `leader past its deadline by ${Math.round(now - cur.validUntil)} ms without demoting`;
      } else if (now - this.expectedWakeAt > this.options.ttlMs) {
        live = false;
        reason = `elector loop has not run for ${Math.round(now - this.expectedWakeAt)} ms past its schedule`;
      } else {
        const since = this.lastContactAt ?? this.startedAt;
        if (this.consecutiveFailures > 0 && now - since > this.options.unreachableAfterMs) {
          reason = `store unreachable for ${Math.round(now - since)} ms`;
        }
      }
      if (!reason && cur && now < cur.validUntil) {
        for (const h of this.hooks) {
          const p = h.healthProblem();
          if (p) {
            reason = p;
            break;
          }
        }
      }
    }
    return withHealthJson({
      healthy: reason === null,
      live,
      state: this.state,
      token: cur ? cur.term.token : null,
      validForMs: cur ? Math.max(0, Math.floor((cur.validUntil - now) * 1000) / 1000) : 0,
      lastStoreContactMs: this.lastContactAt === null ? null : Math.round(now - this.lastContactAt),
      consecutiveFailures: this.consecutiveFailures,
      reason,
      leader: this.knownLeader,
    });
  }

  /**
   * Gives up leadership now (if leading): stops leader work, releases the lease
   * (so a watcher takes over at once), then waits `resignCooldownMs` before
   * campaigning again. Resolves true if a term was resigned.
   */
  async resign(): Promise<boolean> {
    const cur = this.current;
    if (!cur) return false;
    return this.resignTerm(cur.term, "resigned");
  }

  /**
   * Term-scoped resign: acts only if `term` is still the current term, so a
   * late call from an old term can never end a newer one.
   */
  async resignTerm(term: Term, reason: "resigned" | "stopped" = "resigned"): Promise<boolean> {
    const cur = this.current;
    if (!cur || cur.term !== term) return false;
    // Cooldown first: the release below may wake this very elector through its own watch.
    if (reason === "resigned")
      this.cooldownUntil = this.options.clock.now() + this.options.resignCooldownMs;
    this.demote(cur, reason);
    await this.termEnding;
    try {
      const released = await this.callStore("release", () => this.options.store.release(cur.lease));
      if (released.ok) {
        this.options.logger.info(
          released.value ? "released lease" : "lease was no longer ours to release",
          {
            lease: this.options.name,
            token: cur.term.token,
          },
        );
      }
    } finally {
      if (reason === "resigned")
        this.cooldownUntil = this.options.clock.now() + this.options.resignCooldownMs;
      this.wake();
    }
    return true;
  }

  /** Resigns (fast handoff), stops leader work and the campaign. Resolves when all is released. */
  stop(): Promise<void> {
    this.stopped.abort();
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  // -------------------------------------------------- lock-style helpers

  /** Aborted by stop(): ends every waitForLeadership(). */
  private readonly stopped = new AbortController();

  /**
   * Resolves with the term once this elector leads (at once if it leads
   * now). Rejects with `signal.reason` if `signal` aborts first, or with a
   * `closed` StoreError if the elector is stopped first. Call `start()` too.
   */
  waitForLeadership(opts: { signal?: AbortSignal } = {}): Promise<Term> {
    return waitForLeadership(this, this.stopped.signal, opts);
  }

  /** `await using elector = createElector(…)`: `stop()` at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    const cur = this.current;
    if (cur) await this.resignTerm(cur.term, "stopped");
    this.wake();
    await this.loop;
    await this.termEnding;
    if (this.unwatch) {
      await this.unwatch().catch(() => {});
      this.unwatch = null;
    }
    await Promise.allSettled(this.hooks.map((h) => h.close()));
    this.state = "stopped";
  }

  // ---------------------------------------------------------------- the loop

  private async run(): Promise<void> {
    while (!this.stopping) {
      const term = await this.runFollower();
      if (!term) break;
      await this.runLeader(term);
      // Never start a new term while the last one's leader work is still stopping (bounded by stopTimeoutMs).
      await this.termEnding;
    }
  }

  /** Campaigns until elected (returns the new term) or stopping (returns null). */
  private async runFollower(): Promise<LeaderTerm | null> {
    const o = this.options;
    this.state = "follower";
    // A wake left over from the term's end (demote wakes an idle leader loop) is answered by the
    // acquire below; left set, it would cut the first failure backoff to nothing.
    if (this.wakeController.signal.aborted) this.wakeController = new AbortController();
    while (!this.stopping) {
      const now = o.clock.now();
      if (now < this.cooldownUntil) {
        await this.idle(this.cooldownUntil - now);
        continue;
      }
      const sentAt = o.clock.now();
      const res = await this.callStore("acquire", () =>
        o.store.acquire(o.name, o.holderId, o.ttlMs),
      );
      if (!res.ok) {
        await this.idle(this.failureDelay());
        continue;
      }
      const r = res.value;
      if (r.acquired) {
        const validUntil = sentAt + o.ttlMs - o.safetyMarginMs;
        if (this.stopping) {
          await this.callStore("release", () => o.store.release(r.lease));
          return null;
        }
        if (o.clock.now() >= validUntil) {
          // The answer came back after the trust window: do not lead on it.
          o.logger.warn("acquired too late to trust; campaigning again", {
            lease: o.name,
            token: r.lease.token,
          });
          continue;
        }
        const controller = new AbortController();
        const term: Term = Object.freeze({
          name: o.name,
          holder: o.holderId,
          token: r.lease.token,
          signal: controller.signal,
        });
        return { term, lease: r.lease, controller, sentAt, validUntil };
      }
      this.setKnownLeader(r.current);
      const jitter = Math.floor(o.random() * Math.min(50, o.retryMs / 4 + 1));
      const waitMs = r.current?.expiresInMs ?? r.retryInMs;
      const delay = waitMs !== undefined ? Math.min(o.retryMs, waitMs + jitter) : jitter;
      await this.idle(delay);
    }
    return null;
  }

  /** Leads `st` until the term ends. */
  private async runLeader(st: LeaderTerm): Promise<void> {
    const o = this.options;
    this.current = st;
    this.state = "leader";
    this.statsData.elections += 1;
    this.setKnownLeader({
      name: o.name,
      holder: o.holderId,
      token: st.term.token,
      expiresInMs: o.ttlMs,
    });
    o.logger.info("elected", { lease: o.name, holder: o.holderId, token: st.term.token });
    this.events.emit("elected", st.term);
    for (const h of [...this.hooks]) {
      if (this.current !== st) break;
      this.safeCall(() => h.onElected(st.term));
    }
    // The term is a client of the shared renewer of its store and clock (DESIGN §7): it owns no
    // timer; the renewer sends its request with whatever else is due then and races the deadline.
    // It leaves the renewer the moment the term's signal aborts.
    const renewal = renewerFor(o.store, { clock: o.clock }).join(
      st.lease,
      o.ttlMs,
      st.controller.signal,
    );
    let nextRenewAt = st.sentAt + o.renewIntervalMs;
    let renewFailures = 0;
    try {
      while (this.current === st) {
        if (this.checkDeadline()) break;
        this.expectedWakeAt = Math.min(nextRenewAt, st.validUntil);
        // It may go up to half an interval early, with an earlier slot (renewing early is safe).
        const out = await renewal.next(nextRenewAt, st.validUntil, o.renewIntervalMs / 2);
        this.expectedWakeAt = o.clock.now();
        if (this.current !== st) break;
        const res = this.renewAnswer(out, st.validUntil);
        if (this.checkDeadline()) break;
        if (!res) continue;
        if (!res.ok) {
          renewFailures += 1;
          const delay = backoffDelay(
            renewFailures,
            {
              initialMs: Math.min(100, o.renewIntervalMs),
              maxMs: Math.max(100, o.renewIntervalMs / 2),
              jitter: 0.2,
            },
            o.random,
          );
          nextRenewAt = o.clock.now() + delay;
          continue;
        }
        renewFailures = 0;
        const { sentAt } = res;
        if (res.value.renewed) {
          // The trust window starts when the batch that renewed it was sent.
          st.sentAt = sentAt;
          st.validUntil = sentAt + o.ttlMs - o.safetyMarginMs;
          nextRenewAt = sentAt + o.renewIntervalMs;
          this.statsData.renewals += 1;
          this.events.emit("renewed", { token: st.term.token, latencyMs: o.clock.now() - sentAt });
          continue;
        }
        this.setKnownLeader(res.value.current);
        this.demote(st, "lost");
        break;
      }
    } finally {
      renewal.leave();
    }
  }

  /**
   * The renewer's outcome as a store call (counted, logged and reported like
   * any other); null when nothing was sent (the deadline came first) or the
   * term left.
   */
  private renewAnswer(
    out: RenewOutcome,
    validUntil: number,
  ): (StoreCall<RenewResult> & { sentAt: number }) | null {
    switch (out.kind) {
      case "renewed":
        return { ...this.storeAnswered(RENEWED), sentAt: out.sentAt };
      case "lost":
        return {
          ...this.storeAnswered<RenewResult>({ renewed: false, current: out.current }),
          sentAt: out.sentAt,
        };
      case "failed":
        return { ...this.storeFailed("renew", out.error), sentAt: out.sentAt };
      case "timeout":
        return {
          ...this.storeFailed(
            "renew",
            new StoreError(
              `tenure elector: renew timed out after ${Math.round(validUntil - out.sentAt)} ms`,
              { transient: true, kind: "timeout" },
            ),
          ),
          sentAt: out.sentAt,
        };
      default:
        return null;
    }
  }

  /**
   * Asks the store whether `term` still holds the lease and ends it with
   * `lost` at once when not (another holder or nobody holds it). `held`: the
   * store shows this term's holder and token; `ended`: the term is over (now or
   * before); `unknown`: the store could not answer. Never extends the trust
   * window: only a renewal does.
   */
  async confirmTerm(term: Term): Promise<"held" | "ended" | "unknown"> {
    const o = this.options;
    const st = this.current;
    if (!st || st.term !== term || this.checkDeadline()) return "ended";
    let cur: LeaseInfo | null;
    try {
      const r = await raceDeadline(
        o.clock,
        o.store.read(o.name),
        o.storeTimeoutMs,
        st.controller.signal,
      );
      if (r === TIMED_OUT) return this.current === st ? "unknown" : "ended";
      cur = r;
    } catch (e) {
      o.logger.debug("cannot confirm the lease after a notification", { lease: o.name, err: e });
      return this.current === st ? "unknown" : "ended";
    }
    if (this.current !== st) return "ended";
    if (cur && cur.holder === st.lease.holder && cur.token === st.lease.token) return "held";
    // The store no longer shows this term: released, expired or taken by another.
    this.setKnownLeader(cur);
    this.demote(st, "lost");
    return "ended";
  }

  /** A store notification while leading: confirm with one read (coalesced) whether the lease is still ours. */
  private checkLoss(): void {
    const st = this.current;
    if (!st) return;
    if (this.lossCheck) {
      this.lossCheckAgain = true;
      return;
    }
    this.lossCheck = this.confirmTerm(st.term).finally(() => {
      this.lossCheck = null;
      if (this.lossCheckAgain) {
        this.lossCheckAgain = false;
        this.checkLoss();
      }
    });
  }

  /** Demotes with `expired` if the trust window has passed. True if it did. */
  private checkDeadline(): boolean {
    const cur = this.current;
    if (cur && this.options.clock.now() >= cur.validUntil) {
      this.demote(cur, "expired");
      return true;
    }
    return false;
  }

  /** Ends `st` synchronously: leader work sees the abort before anything else runs. */
  private demote(st: LeaderTerm, reason: DemotionReason): void {
    if (this.current !== st) return;
    const o = this.options;
    this.current = null;
    this.state = "follower";
    this.statsData.demotions[reason] += 1;
    st.controller.abort(new TermEndedError(o.name, st.term.token, reason));
    if (this.knownLeader?.self) this.knownLeader = null;
    const fields = { lease: o.name, holder: o.holderId, token: st.term.token, reason };
    if (reason === "lost" || reason === "expired") o.logger.warn("demoted", fields);
    else o.logger.info("demoted", fields);
    const d: Demotion = { name: o.name, holder: o.holderId, token: st.term.token, reason };
    this.events.emit("demoted", d);
    const ends = this.hooks.map((h) =>
      raceDeadline(o.clock, h.onTermEnded(st.term, reason), o.stopTimeoutMs).then(
        (r) => {
          if (r === TIMED_OUT) {
            o.logger.error("leader work did not stop in time", {
              lease: o.name,
              token: st.term.token,
              delayMs: o.stopTimeoutMs,
            });
          }
        },
        (e) => {
          o.logger.error("stopping leader work failed", { lease: o.name, err: e });
          this.events.emit("error", toError(e));
        },
      ),
    );
    this.termEnding = Promise.all([this.termEnding, ...ends]).then(() => undefined);
    this.wake();
  }

  private setKnownLeader(info: LeaseInfo | null): void {
    const next: LeaderInfo | null = info
      ? {
          name: info.name,
          holder: info.holder,
          token: info.token,
          self: info.holder === this.options.holderId,
        }
      : null;
    const prev = this.knownLeader;
    if (prev?.holder === next?.holder && prev?.token === next?.token) return;
    this.knownLeader = next;
    if (next && !next.self) {
      this.options.logger.info("leader is", {
        lease: next.name,
        holder: next.holder,
        token: next.token,
      });
    }
    this.events.emit("leader", next);
  }

  /** Sleeps up to `ms`, waking early on wake(); records when the loop expects to run. */
  private async idle(ms: number): Promise<void> {
    const d = Math.max(0, ms);
    this.expectedWakeAt = this.options.clock.now() + d;
    const signal = this.wakeController.signal;
    if (signal.aborted) {
      this.wakeController = new AbortController();
      return;
    }
    try {
      await this.options.clock.sleep(d, signal);
    } catch {
      // woken
    }
    if (this.wakeController.signal.aborted) this.wakeController = new AbortController();
    this.expectedWakeAt = this.options.clock.now();
  }

  private wake(): void {
    this.wakeController.abort();
  }

  /** Calls a hook that must not throw; if one does, the error is logged and the elector carries on. */
  private safeCall(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.options.logger.error("leader work failed on election", {
        lease: this.options.name,
        err: e,
      });
    }
  }

  private failureDelay(): number {
    return backoffDelay(
      this.consecutiveFailures,
      {
        initialMs: Math.min(100, this.options.retryMs),
        maxMs: this.options.maxBackoffMs,
        jitter: 0.2,
      },
      this.options.random,
    );
  }

  /**
   * Calls the store with a bound. Failures are classified, counted, logged at
   * most once per backoff step and reported on `error`; they never throw.
   */
  private async callStore<T>(
    op: string,
    fn: () => Promise<T>,
    timeoutMs = this.options.storeTimeoutMs,
    cancel?: AbortSignal,
  ): Promise<StoreCall<T>> {
    const o = this.options;
    this.expectedWakeAt = o.clock.now() + timeoutMs;
    let r: T | typeof TIMED_OUT;
    try {
      r = await raceDeadline(o.clock, fn(), timeoutMs, cancel);
    } catch (e) {
      this.expectedWakeAt = o.clock.now();
      return this.storeFailed(op, e);
    }
    this.expectedWakeAt = o.clock.now();
    if (cancel?.aborted) {
      // The term ended while the call was in flight; its answer no longer matters.
      return {
        ok: false,
        error: new StoreError(`tenure elector: ${op} abandoned: term ended`, {
          transient: true,
          kind: "closed",
        }),
      };
    }
    if (r !== TIMED_OUT) return this.storeAnswered(r);
    return this.storeFailed(
      op,
      new StoreError(`tenure elector: ${op} timed out after ${Math.round(timeoutMs)} ms`, {
        transient: true,
        kind: "timeout",
      }),
    );
  }

  /** A store call answered: the store is reachable (again). */
  private storeAnswered<T>(value: T): { ok: true; value: T } {
    const o = this.options;
    this.lastContactAt = o.clock.now();
    const failed = this.repeat.reset();
    if (this.consecutiveFailures > 0 || failed > 0) {
      o.logger.info("store reachable again", {
        lease: o.name,
        attempt: this.consecutiveFailures,
      });
    }
    this.consecutiveFailures = 0;
    return { ok: true, value };
  }

  /**
   * A store call failed: classified, counted, logged at most once per backoff
   * step and reported on `error`; never thrown.
   */
  private storeFailed(op: string, e: unknown): { ok: false; error: StoreError } {
    const o = this.options;
    const error = isStoreError(e)
      ? e
      : new StoreError(`tenure elector: ${op} failed: ${errorMessage(e)}`, {
          transient: false,
          kind: "unknown",
          cause: e,
        });
    this.consecutiveFailures += 1;
    if (error.transient) this.statsData.storeErrors.transient += 1;
    else this.statsData.storeErrors.fatal += 1;
    const logged = this.repeat.hit(`${op}:${error.kind}:${error.code ?? ""}:${error.message}`);
    if (logged) {
      const fields = {
        lease: o.name,
        holder: o.holderId,
        token: this.current?.term.token,
        attempt: this.consecutiveFailures,
        err: error,
        transient: error.transient,
        ...(logged.suppressed > 0 ? { suppressed: logged.suppressed } : {}),
      };
      if (error.transient) o.logger.warn(`store ${op} failed`, fields);
      else o.logger.error(`store ${op} failed`, fields);
    }
    this.events.emit("error", error);
    return { ok: false, error };
  }
}

/** Creates an elector for one lease. Validates options (throws ConfigError). Call `start()` to campaign. */
export function createElector(opts: ElectorOptions): Elector {
  return new Elector(opts);
}
