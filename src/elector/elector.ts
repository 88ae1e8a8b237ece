import { callAsync, raceDeadline, TIMED_OUT } from "../async.js";
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
import { MAX_TIMER_MS } from "../limits.js";
import { RepeatLimiter } from "../logger.js";
import { acquirerFor } from "../renewal/acquirer.js";
import type { RenewOutcome } from "../renewal/outcome.js";
import { renewerFor } from "../renewal/registry.js";
import { releaserFor } from "../renewal/releaser.js";
import type { Renewal, RenewalClient } from "../renewal/renewal.js";
import type { AcquireResult, LeaseEvent, LeaseInfo, LeaseRef, Unwatch } from "../store/types.js";
import { forgetOtherThan, forgetReleased, markEnded, wasEnded } from "./ended.js";
import { withHealthJson } from "./health-json.js";
import {
  type ElectorOptions,
  type ResolvedElectorOptions,
  resolveElectorOptions,
} from "./options.js";
import { ElectedTerm } from "./term.js";
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
  readonly term: ElectedTerm;
  readonly lease: LeaseRef;
  sentAt: number;
  validUntil: number;
  /** The term's membership of the shared renewer, once joined. */
  renewal: Renewal | null;
  /** When the next renewal is due, and how many in a row failed. */
  nextRenewAt: number;
  renewFailures: number;
  /** True while the term's renewal loop runs (lead() until endRenewLoop()). */
  looping: boolean;
}

/** One settled promise for every elector with no leader work still stopping. */
const RESOLVED: Promise<void> = Promise.resolve();

type StoreCall<T> = { ok: true; value: T } | { ok: false; error: StoreError };

/** The elector's emitter: listener failures go to the elector (no closure per elector). */
class ElectorEmitter extends TypedEmitter<ElectorEvents> {
  constructor(private readonly elector: Elector) {
    super();
  }
  protected override listenerFailed(event: string, err: unknown): void {
    this.elector.listenerFailed(event, err);
  }
}

/**
 * One process's campaign for one lease. See docs/ARCHITECTURE.md for the state
 * diagram, the trust window and the term rules.
 */
export class Elector implements RenewalClient {
  readonly options: ResolvedElectorOptions;
  private readonly events: TypedEmitter<ElectorEvents>;
  /** Leader work (services, ticks, streams): created on first use, so a bare elector carries none. */
  private workRef: LeaderWork | null = null;
  private readonly hooks: LeaderHooks[] = [];

  private state: ElectorState = "idle";
  private current: LeaderTerm | null = null;
  /** The last term led: its renewal loop may still be ending after a demotion. */
  private lastLeaderTerm: LeaderTerm | null = null;
  private knownLeader: LeaderInfo | null = null;
  /** The campaign: not started, running, or ended (stopping, or crashed). */
  private loop: "idle" | "running" | "ended" = "idle";
  /** Resolves the promise stop() waits on for the campaign to end (made by stop() only). */
  private loopDone: (() => void) | null = null;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  /** Aborted by wake() while the loop idles; created per idle wait. */
  private wakeController: AbortController | null = null;
  /** A wake() that came while the loop was not idling: the next idle wait returns at once. */
  private woken = false;
  private unwatch: Unwatch | null = null;
  /** The watch came up while an acquire was in flight: ask once more after its answer. */
  private watchCameUp = false;
  /** Failed watch set-ups in a row; `watchRetry` aborts the wait before the next one (stop()). */
  private watchFailures = 0;
  private watchRetry: AbortController | null = null;
  private cooldownUntil = 0;
  /**
   * The last term this elector ended without releasing it (expired, or lost):
   * the store may still hold it under this holder. stop() releases it, so the
   * next elector of this holder id (a group campaigning for the partition
   * again) finds the lease free. (That it is never led again under its token
   * does not rest on this release: see ./ended.ts.)
   */
  private endedUnreleased: LeaseRef | null = null;
  private termEnding: Promise<void> = RESOLVED;
  /** A read confirming a notified loss is in flight; `lossCheckAgain`: another notification came meanwhile. */
  private lossCheck: Promise<unknown> | null = null;
  private lossCheckAgain = false;

  // health bookkeeping
  private startedAt = 0;
  private lastContactAt: number | null = null;
  private consecutiveFailures = 0;
  /** When the loop is next expected to run; overdue by more than ttl ⇒ stuck. */
  private expectedWakeAt = 0;
  /** Made on the first store failure. */
  private repeat: RepeatLimiter | null = null;
  // Counters of stats(), as plain fields (no objects per elector).
  private elections = 0;
  private renewals = 0;
  private demotedLost = 0;
  private demotedExpired = 0;
  private demotedResigned = 0;
  private demotedStopped = 0;
  private transientErrors = 0;
  private fatalErrors = 0;

  constructor(opts: ElectorOptions) {
    this.options = resolveElectorOptions(opts);
    this.events = new ElectorEmitter(this);
  }

  /** @internal A listener threw or rejected: logged, and reported on `error` (unless it was an `error` listener). */
  listenerFailed(event: string, err: unknown): void {
    this.options.logger.error(describeListenerError(event, err), { lease: this.options.name });
    if (event !== "error") this.events.emit("error", toError(err));
  }

  /** The leader work of this elector, created and attached on first use. */
  private get work(): LeaderWork {
    if (this.workRef) return this.workRef;
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
    const work = new LeaderWork(ctx);
    this.workRef = work;
    this.attach(work);
    return work;
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
    if (this.loop !== "idle") return;
    if (this.stopping) throw new LifecycleError("elector", "cannot start after stop()");
    this.startedAt = this.options.clock.now();
    this.expectedWakeAt = this.startedAt;
    this.state = "follower";
    const { store } = this.options;
    if (store.notifies && store.watch) {
      // The campaign does not wait for the watch: on etcd a client sets its watches up one
      // at a time (one round trip each, behind every watch it re-attaches after a fault), so a
      // group starting dozens of partitions sent their acquires one by one, each only after its
      // own watch. A change pushed before the watch is up is missed, so once it is, a follower
      // asks again at once (an acquire in flight is answered, then one more goes out) and a
      // leader elected meanwhile confirms its term, as on a pushed change.
      this.startWatch();
    }
    this.loop = "running";
    this.follow();
  }

  /**
   * Sets the lease's watch up; one that fails is tried again with a bounded backoff (100 ms,
   * or retryMs if shorter, doubling up to maxBackoffMs) until it is up or the elector stops;
   * until then the follower polls. Giving up after one failure left an elector whose watch
   * timed out (a loaded machine, a cut store member) learning of releases only at its poll
   * interval for the rest of its life.
   */
  private startWatch(): void {
    const { store } = this.options;
    if (!store.watch || this.stopping) return;
    const watch = store.watch.bind(store);
    void callAsync(() => watch(this.options.name, this.onLeaseEvent.bind(this))).then(
      (unwatch) => {
        // Set up after stop() began: removed at once (stop() does not wait for it).
        if (this.stopping) {
          void callAsync(unwatch).catch(() => {});
          return;
        }
        this.watchFailures = 0;
        this.unwatch = unwatch;
        if (this.current) this.checkLoss();
        // A follower backing off after a failed call keeps its backoff (it asks again when the
        // backoff ends, with the watch up by then). One waiting on a "held" answer asks again
        // now; one whose acquire is in flight asks once more after that answer.
        else if (this.consecutiveFailures === 0) {
          if (this.wakeController) this.wake();
          else this.watchCameUp = true;
        }
      },
      (e: unknown) => {
        if (this.stopping) return;
        this.watchFailures += 1;
        const o = this.options;
        const delay = backoffDelay(
          this.watchFailures,
          { initialMs: Math.min(100, o.retryMs), maxMs: o.maxBackoffMs, jitter: 0.2 },
          o.random,
        );
        // Logged once per run of failures; the retries are quiet until one succeeds.
        if (this.watchFailures === 1)
          o.logger.warn("cannot watch lease; polling until the watch is up again", {
            lease: o.name,
            err: e,
          });
        const ac = new AbortController();
        this.watchRetry = ac;
        o.clock.sleep(delay, ac.signal).then(
          () => {
            if (this.watchRetry === ac) this.watchRetry = null;
            this.startWatch();
          },
          () => {}, // stopped
        );
      },
    );
  }

  private onLeaseEvent(e: LeaseEvent): void {
    const cur = this.current;
    if (cur) {
      // The leader's own write (its acquire, a renewal that moved its key) shows its own term:
      // nothing to confirm. Confirming it hurried a renewal out of its batch's slot, one per
      // lease as the notifications came in: on etcd, 1 000 terms acquired in one round trip
      // then renewed in ~200 round trips per interval instead of 1 (bench scale part).
      if (e.type !== "released" && e.token !== undefined && e.token === cur.term.token) return;
      // Loss is pushed, not polled: a leader told of any other change confirms it still holds
      // the lease.
      this.checkLoss();
    } else if (e.type === "released") this.wake();
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

  /** Counters for metrics (a snapshot). */
  stats(): Readonly<ElectorStats> {
    return {
      elections: this.elections,
      demotions: {
        lost: this.demotedLost,
        expired: this.demotedExpired,
        resigned: this.demotedResigned,
        stopped: this.demotedStopped,
      },
      renewals: this.renewals,
      storeErrors: { transient: this.transientErrors, fatal: this.fatalErrors },
    };
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
    // No campaign while the release is in flight: it may wake this very elector through its
    // own watch, and an acquire that reached the store before the release would find the
    // term still held (and release it once more). The cooldown proper starts once the
    // release is done (below).
    if (reason === "resigned") this.cooldownUntil = this.options.clock.now() + MAX_TIMER_MS;
    this.demote(cur, reason);
    await this.termEnding;
    try {
      // Through the shared releaser: releases of this turn (a group handing many partitions
      // over at once) go out as one releaseMany round trip. This term's work has stopped.
      const released = await this.releaseLease(cur.lease);
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
    this.stopCalled = true;
    this.stoppedController?.abort();
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  // -------------------------------------------------- lock-style helpers

  /** Aborted by stop(): ends every waitForLeadership(). Created by the first of them. */
  private stoppedController: AbortController | null = null;
  private stopCalled = false;

  /**
   * Resolves with the term once this elector leads (at once if it leads
   * now). Rejects with `signal.reason` if `signal` aborts first, or with a
   * `closed` StoreError if the elector is stopped first. Call `start()` too.
   */
  waitForLeadership(opts: { signal?: AbortSignal } = {}): Promise<Term> {
    if (!this.stoppedController) {
      this.stoppedController = new AbortController();
      if (this.stopCalled) this.stoppedController.abort();
    }
    return waitForLeadership(this, this.stoppedController.signal, opts);
  }

  /** `await using elector = createElector(…)`: `stop()` at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.watchRetry?.abort();
    this.watchRetry = null;
    const cur = this.current;
    if (cur) await this.resignTerm(cur.term, "stopped");
    else if (this.endedUnreleased) {
      // A term that ended here without a release (expired: its renewal did not come back in
      // time) may still be held in the store under this holder: released now, so the lease is
      // free for the next holder at once (token-checked: a term the store no longer shows is
      // left alone).
      const ended = this.endedUnreleased;
      this.endedUnreleased = null;
      await this.releaseLease(ended);
    }
    this.wake();
    if (this.loop === "running")
      await new Promise<void>((resolve) => {
        this.loopDone = resolve;
      });
    await this.termEnding;
    if (this.unwatch) {
      await this.unwatch().catch(() => {});
      this.unwatch = null;
    }
    await Promise.allSettled(this.hooks.map((h) => h.close()));
    this.state = "stopped";
  }

  // ---------------------------------------------------------------- the loop

  // The campaign: runFollower() until elected, then lead(term) until the term ends, then again,
  // until stopping. The follower phase is an async function; the leader phase runs on the shared
  // renewer's outcomes (onRenewal), so a leader holds no suspended async frame (a process may
  // hold 100 000 terms). `this.loop` says where the campaign is; stop() waits for it to end.

  private follow(): void {
    this.runFollower().then(
      (term) => {
        if (!term) this.endLoop();
        // stop() called after the campaign's last look at `stopping` and before this callback
        // (a group hands a partition over while its acquire is being answered): leading now
        // would renew a term nobody ends, and stop() would wait for it forever. Release it.
        else if (this.stopping) this.releaseUnled(term);
        else this.lead(term);
      },
      (e: unknown) => this.loopCrashed(e),
    );
  }

  /** A term won while stop() began: released (as by a campaign that sees `stopping`), then the loop ends. */
  private releaseUnled(st: LeaderTerm): void {
    this.releaseLease(st.lease).then(
      () => this.endLoop(),
      (e: unknown) => this.loopCrashed(e),
    );
  }

  /**
   * Releases `lease` through the shared releaser (releases of one turn, e.g. a group handing
   * many partitions over, go out as one releaseMany round trip), bounded by storeTimeoutMs.
   * Once released, an ended term of it can no longer come back (./ended.ts).
   */
  private async releaseLease(lease: LeaseRef): Promise<StoreCall<boolean>> {
    const o = this.options;
    const deadline = o.clock.now() + o.storeTimeoutMs;
    const released = await this.callStore("release", () =>
      releaserFor(o.store, { clock: o.clock }).release(lease, deadline),
    );
    if (released.ok) forgetReleased(o.store, lease);
    return released;
  }

  /** The leader phase of `st` ended: campaign again, once its leader work has stopped. */
  private afterTerm(): void {
    // Never start a new term while the last one's leader work is still stopping (bounded by stopTimeoutMs).
    this.termEnding.then(
      () => {
        if (this.stopping) this.endLoop();
        else this.follow();
      },
      (e: unknown) => this.loopCrashed(e),
    );
  }

  private endLoop(): void {
    this.loop = "ended";
    const done = this.loopDone;
    this.loopDone = null;
    done?.();
  }

  private loopCrashed(e: unknown): void {
    // The loop is written not to throw; if it does, report it instead of crashing.
    this.options.logger.error("elector loop crashed", { lease: this.options.name, err: e });
    this.events.emit("error", toError(e));
    this.endLoop();
  }

  /** Campaigns until elected (returns the new term) or stopping (returns null). */
  private async runFollower(): Promise<LeaderTerm | null> {
    const o = this.options;
    this.state = "follower";
    // A wake left over from the term's end (demote wakes an idle leader loop) is answered by the
    // acquire below; left set, it would cut the first failure backoff to nothing.
    this.woken = false;
    while (!this.stopping) {
      const now = o.clock.now();
      if (now < this.cooldownUntil) {
        await this.idle(this.cooldownUntil - now);
        continue;
      }
      // The campaign goes through the shared acquirer of its store and clock (DESIGN §7):
      // acquires issued in the same turn go out as one acquireMany round trip. A won term's
      // trust window starts when its batch was sent.
      // The acquirer bounds the wait (not sent after storeTimeoutMs in its queue; once sent, an
      // answer not back within storeTimeoutMs of the batch's send fails as a timeout) with one
      // timer per batch: no timer or AbortController per elector.
      let sentAt = o.clock.now();
      this.expectedWakeAt = sentAt + 2 * o.storeTimeoutMs;
      let res: StoreCall<AcquireResult>;
      try {
        const a = await acquirerFor(o.store, { clock: o.clock }).acquire(
          o.name,
          o.holderId,
          o.ttlMs,
          sentAt + o.storeTimeoutMs,
          o.storeTimeoutMs,
        );
        sentAt = a.sentAt;
        res = this.storeAnswered(a.result);
      } catch (e) {
        res = this.storeFailed("acquire", e);
      }
      this.expectedWakeAt = o.clock.now();
      if (!res.ok) {
        this.watchCameUp = false;
        await this.idle(this.failureDelay());
        continue;
      }
      const r = res.value;
      if (r.acquired) {
        const validUntil = sentAt + o.ttlMs - o.safetyMarginMs;
        if (this.stopping) {
          await this.releaseLease(r.lease);
          return null;
        }
        if (wasEnded(o.store, r.lease)) {
          // The store still held the term this elector ended, and answered it (an acquire of a
          // lease the holder holds live goes on with its term). Leading it again would hand the
          // ended term's leftover work a valid token: end it in the store, then campaign again.
          o.logger.info("store still held the ended term; releasing it", {
            lease: o.name,
            token: r.lease.token,
          });
          const released = await this.callStore("release", () => o.store.release(r.lease));
          if (released.ok) {
            forgetReleased(o.store, r.lease);
            this.endedUnreleased = null;
          } else await this.idle(this.failureDelay());
          continue;
        }
        // A new term for this holder: an ended one of this name can no longer come back.
        forgetOtherThan(o.store, r.lease);
        if (o.clock.now() >= validUntil) {
          // The answer came back after the trust window: do not lead on it.
          o.logger.warn("acquired too late to trust; campaigning again", {
            lease: o.name,
            token: r.lease.token,
          });
          continue;
        }
        return {
          term: new ElectedTerm(o.name, o.holderId, r.lease.token),
          lease: r.lease,
          sentAt,
          validUntil,
          renewal: null,
          nextRenewAt: 0,
          renewFailures: 0,
          looping: false,
        };
      }
      this.setKnownLeader(r.current);
      if (this.watchCameUp) {
        // Answered from before the watch was up: a release since may not have been pushed.
        this.watchCameUp = false;
        continue;
      }
      const jitter = Math.floor(o.random() * Math.min(50, o.retryMs / 4 + 1));
      const waitMs = r.current?.expiresInMs ?? r.retryInMs;
      const delay = waitMs !== undefined ? Math.min(o.retryMs, waitMs + jitter) : jitter;
      await this.idle(delay);
    }
    return null;
  }

  /** Leads `st` until the term ends; then afterTerm(). */
  private lead(st: LeaderTerm): void {
    try {
      this.startLeading(st);
    } catch (e) {
      this.loopCrashed(e);
    }
  }

  private startLeading(st: LeaderTerm): void {
    const o = this.options;
    this.current = st;
    this.lastLeaderTerm = st;
    this.state = "leader";
    this.elections += 1;
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
    if (this.current !== st) {
      this.afterTerm();
      return;
    }
    // The term is a client of the shared renewer of its store and clock (DESIGN §7): it owns no
    // timer; the renewer sends its request with whatever else is due then and races the deadline.
    // demote() makes it leave at once (no abort listener per term). The loop below is driven by
    // the renewer's outcomes (onRenewal), not by an async frame and a promise per renewal: a
    // process may hold 100 000 terms.
    st.renewal = renewerFor(o.store, { clock: o.clock }).join(st.lease, o.ttlMs);
    st.nextRenewAt = st.sentAt + o.renewIntervalMs;
    st.renewFailures = 0;
    st.looping = true;
    this.renewLoop(st);
  }

  /** The head of the leader's renewal loop: asks for the next renewal, or ends the loop. */
  private renewLoop(st: LeaderTerm): void {
    if (this.current !== st || this.checkDeadline()) {
      this.endRenewLoop(st);
      return;
    }
    const o = this.options;
    this.expectedWakeAt = Math.min(st.nextRenewAt, st.validUntil);
    // It may go up to half an interval early, with an earlier slot (renewing early is safe).
    st.renewal!.ask(st.nextRenewAt, st.validUntil, o.renewIntervalMs / 2, this);
  }

  private endRenewLoop(st: LeaderTerm): void {
    st.renewal?.leave();
    if (!st.looping) return;
    st.looping = false;
    this.afterTerm();
  }

  /**
   * @internal The shared renewer's outcome for the current term's request:
   * counted, logged and reported like any other store call; then the loop
   * goes on (renewed, or a failure backed off) or ends (lost, demoted).
   */
  onRenewal(r: Renewal, out: RenewOutcome): void {
    const st = this.current?.renewal === r ? this.current : null;
    if (!st) {
      // The term ended (demote made it leave): end its loop.
      const cur = this.leaderLoopOf(r);
      if (cur) this.endRenewLoop(cur);
      return;
    }
    try {
      this.renewOutcome(st, out);
    } catch (e) {
      // Written not to throw; if it does, report it and end the term's loop rather than hang.
      this.options.logger.error("elector renewal loop crashed", {
        lease: this.options.name,
        err: e,
      });
      this.events.emit("error", toError(e));
      this.demote(st, "expired");
      this.endRenewLoop(st);
    }
  }

  /** The term whose renewal loop `r` belongs to (the current term's, or the one just ended). */
  private leaderLoopOf(r: Renewal): LeaderTerm | null {
    const t = this.lastLeaderTerm;
    return t && t.renewal === r ? t : null;
  }

  private renewOutcome(st: LeaderTerm, out: RenewOutcome): void {
    const o = this.options;
    this.expectedWakeAt = o.clock.now();
    let failed = false;
    switch (out.kind) {
      case "renewed":
      case "lost":
        this.storeContact();
        break;
      case "failed":
        this.storeFailed("renew", out.error);
        failed = true;
        break;
      case "timeout":
        this.storeFailed(
          "renew",
          new StoreError(
            `tenure elector: renew timed out after ${Math.round(st.validUntil - out.sentAt)} ms`,
            { transient: true, kind: "timeout" },
          ),
        );
        failed = true;
        break;
      case "left":
        // The term left the renewer (it ended): the loop ends too.
        this.endRenewLoop(st);
        return;
      default:
        // Nothing was sent (the deadline came first): back to the loop's head.
        this.renewLoop(st);
        return;
    }
    if (this.checkDeadline()) {
      this.endRenewLoop(st);
      return;
    }
    if (failed) {
      st.renewFailures += 1;
      const delay = backoffDelay(
        st.renewFailures,
        {
          initialMs: Math.min(100, o.renewIntervalMs),
          maxMs: Math.max(100, o.renewIntervalMs / 2),
          jitter: 0.2,
        },
        o.random,
      );
      st.nextRenewAt = o.clock.now() + delay;
      this.renewLoop(st);
      return;
    }
    st.renewFailures = 0;
    if (out.kind === "renewed") {
      // The trust window starts when the batch that renewed it was sent.
      const sentAt = out.sentAt;
      st.sentAt = sentAt;
      st.validUntil = sentAt + o.ttlMs - o.safetyMarginMs;
      st.nextRenewAt = sentAt + o.renewIntervalMs;
      this.renewals += 1;
      if (this.events.has("renewed"))
        this.events.emit("renewed", { token: st.term.token, latencyMs: o.clock.now() - sentAt });
      this.renewLoop(st);
      return;
    }
    if (out.kind === "lost") this.setKnownLeader(out.current);
    this.demote(st, "lost");
    this.endRenewLoop(st);
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
      const r = await raceDeadline(o.clock, o.store.read(o.name), o.storeTimeoutMs, st.term.signal);
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

  /**
   * A store notification while leading: confirm whether the lease is still
   * ours. With the term on the shared renewer, by renewing now (batched with
   * every other lease's check: a process's own acquires notify all of its new
   * leaders at once); a renewal answers like a read (renewed, or lost to its
   * current holder) and extends the window. Else with one read (coalesced).
   */
  private checkLoss(): void {
    const st = this.current;
    if (!st) return;
    if (st.renewal) {
      st.renewal.hurry();
      return;
    }
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
    // The store may still hold it: an acquire of this name and holder (by this elector or a
    // later one on the same store, e.g. a group given the partition back) must not lead it again.
    markEnded(o.store, st.lease);
    this.endedUnreleased = reason === "expired" || reason === "lost" ? st.lease : null;
    this.state = "follower";
    if (reason === "lost") this.demotedLost += 1;
    else if (reason === "expired") this.demotedExpired += 1;
    else if (reason === "resigned") this.demotedResigned += 1;
    else this.demotedStopped += 1;
    ElectedTerm.end(st.term, new TermEndedError(o.name, st.term.token, reason));
    // After the term's abort listeners, as when the renewal listened on the signal itself.
    st.renewal?.leave();
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
    if (ends.length > 0)
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
    if (this.woken) {
      this.woken = false;
      return;
    }
    const ac = new AbortController();
    this.wakeController = ac;
    try {
      await this.options.clock.sleep(d, ac.signal);
    } catch {
      // woken
    }
    if (this.wakeController === ac) this.wakeController = null;
    this.woken = false;
    this.expectedWakeAt = this.options.clock.now();
  }

  private wake(): void {
    if (this.wakeController) this.wakeController.abort();
    else this.woken = true;
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
    this.storeContact();
    return { ok: true, value };
  }

  /** The store answered: it is reachable (again). */
  private storeContact(): void {
    const o = this.options;
    this.lastContactAt = o.clock.now();
    const failed = this.repeat?.reset() ?? 0;
    if (this.consecutiveFailures > 0 || failed > 0) {
      o.logger.info("store reachable again", {
        lease: o.name,
        attempt: this.consecutiveFailures,
      });
    }
    this.consecutiveFailures = 0;
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
    if (error.transient) this.transientErrors += 1;
    else this.fatalErrors += 1;
    this.repeat ??= new RepeatLimiter();
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
