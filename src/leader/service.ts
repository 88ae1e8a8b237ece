import { callAsync, pause, raceDeadline, TIMED_OUT } from "../async.js";
import { backoffDelay } from "../backoff.js";
import { ConfigError, type DemotionReason, TimeoutError, toError } from "../errors.js";
import { checkInt, MAX_TIMER_MS } from "../limits.js";
import type { Term } from "../term.js";
import type { LeaderContext } from "./hooks.js";

/** How a failing `start` is retried before the leader resigns. */
export interface StartRetryOptions {
  /** Start attempts in all (the first included). Default 5: delays 1, 2, 4, 8 s between them. */
  attempts?: number;
  /** Delay before the second attempt. Default 1 000 ms. */
  initialDelayMs?: number;
  /** Largest delay between attempts. Default 30 000 ms. */
  maxDelayMs?: number;
  /** Randomised fraction of each delay, 0–1 (0.2 ⇒ ±10 %). Default 0.2. */
  jitter?: number;
}

/** What `stop` learns about the start it undoes. */
export interface StartedService<T> {
  /** The term the start ran for. */
  readonly term: Term;
  /** What that `start` returned (for example a server handle). */
  readonly value: T;
}

/** A leader-only service: started on election, stopped when the term ends. */
export interface ServiceDefinition<T = unknown> {
  /** Unique name among this elector's services (logs, health, metrics). */
  name: string;
  /**
   * Starts the service for `term`. May return a handle; it is passed back to
   * `stop`, so a late start from an old term can be undone without touching a
   * newer term's instance. A start that throws must clean up after itself.
   */
  start(term: Term): T | Promise<T>;
  /**
   * Stops what one successful `start` started. Called exactly once per
   * successful start, in reverse start order, with why the term ended.
   */
  stop(reason: DemotionReason, started: StartedService<T>): unknown;
  /** Retry policy for `start`. Defaults: see {@link StartRetryOptions}. */
  startRetry?: StartRetryOptions;
  /** Bound on one `stop` call; a stop still running after it is reported and abandoned. Default 5 000 ms. */
  stopTimeoutMs?: number;
  /** A leader whose service is still starting after this long reports unhealthy. Default 10 000 ms. */
  startGraceMs?: number;
}

/** Defaults of {@link ServiceDefinition}. */
export const SERVICE_DEFAULTS = Object.freeze({
  attempts: 5,
  initialDelayMs: 1_000,
  maxDelayMs: 30_000,
  jitter: 0.2,
  stopTimeoutMs: 5_000,
  startGraceMs: 10_000,
});

/**
 * How long a new term of this process waits for the previous term's services
 * to stop before it starts its own (a quick re-election can overlap the old
 * term's teardown). Each stop is already bounded by its service's
 * `stopTimeoutMs`; this bounds the whole wait, so an old term's stuck
 * teardown delays the new term's services by at most this long.
 */
export const PREVIOUS_TERM_WAIT_MS = 10_000;

/**
 * Where a service stands in the current term. `starting`: the first attempt
 * is running (healthy for `startGraceMs`); `retrying`: an attempt failed and
 * the service waits for, or runs, the next one (unhealthy: it is not running).
 */
export type ServiceState = "idle" | "starting" | "retrying" | "running" | "failed" | "stopped";

interface Svc {
  readonly name: string;
  readonly def: ServiceDefinition<unknown>;
  readonly attempts: number;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly jitter: number;
  readonly stopTimeoutMs: number;
  readonly startGraceMs: number;
  removed: boolean;
}

interface SvcStatus {
  state: ServiceState;
  attempt: number;
  since: number;
}

function resolveService(def: ServiceDefinition<unknown>): Svc {
  if (!def || typeof def !== "object") throw new ConfigError("service", "must be an object");
  if (typeof def.name !== "string" || def.name.length === 0 || def.name.length > 128) {
    throw new ConfigError("service.name", "must be a non-empty string of at most 128 characters");
  }
  if (typeof def.start !== "function") throw new ConfigError("service.start", "must be a function");
  if (typeof def.stop !== "function") throw new ConfigError("service.stop", "must be a function");
  const r = def.startRetry ?? {};
  const attempts = checkInt(
    "service.startRetry.attempts",
    r.attempts ?? SERVICE_DEFAULTS.attempts,
    1,
    1000,
  );
  const initialDelayMs = checkInt(
    "service.startRetry.initialDelayMs",
    r.initialDelayMs ?? SERVICE_DEFAULTS.initialDelayMs,
    0,
    MAX_TIMER_MS,
    " (ms)",
  );
  const maxDelayMs = checkInt(
    "service.startRetry.maxDelayMs",
    r.maxDelayMs ?? Math.max(initialDelayMs, SERVICE_DEFAULTS.maxDelayMs),
    initialDelayMs,
    MAX_TIMER_MS,
    " (ms)",
  );
  const jitter = r.jitter ?? SERVICE_DEFAULTS.jitter;
  if (typeof jitter !== "number" || !(jitter >= 0 && jitter <= 1)) {
    throw new ConfigError(
      "service.startRetry.jitter",
      `must be a number from 0 to 1, got ${String(jitter)}`,
    );
  }
  return {
    name: def.name,
    def,
    attempts,
    initialDelayMs,
    maxDelayMs,
    jitter,
    stopTimeoutMs: checkInt(
      "service.stopTimeoutMs",
      def.stopTimeoutMs ?? SERVICE_DEFAULTS.stopTimeoutMs,
      1,
      MAX_TIMER_MS,
      " (ms)",
    ),
    startGraceMs: checkInt(
      "service.startGraceMs",
      def.startGraceMs ?? SERVICE_DEFAULTS.startGraceMs,
      0,
      MAX_TIMER_MS,
      " (ms)",
    ),
    removed: false,
  };
}

/** Services of one term. A runner never touches another term's services. */
class TermServices {
  ended = false;
  reason: DemotionReason = "stopped";
  readonly ac = new AbortController();
  private idx = 0;
  private pumping = false;
  private gaveUp = false;
  private readonly started: { svc: Svc; value: unknown }[] = [];
  /** The start attempt in progress (until it has returned and, if its term ended, been stopped). */
  private inflight: { svc: Svc; done: Promise<unknown> } | null = null;
  readonly status = new Map<Svc, SvcStatus>();

  constructor(
    private readonly ctx: LeaderContext,
    readonly term: Term,
    readonly queue: Svc[],
  ) {
    for (const s of queue)
      this.status.set(s, { state: "idle", attempt: 0, since: ctx.clock.now() });
  }

  add(svc: Svc): void {
    this.queue.push(svc);
    this.status.set(svc, { state: "idle", attempt: 0, since: this.ctx.clock.now() });
    void this.pump();
  }

  async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.ended && !this.gaveUp && this.idx < this.queue.length) {
        const svc = this.queue[this.idx++]!;
        if (svc.removed) continue;
        if (!(await this.startOne(svc))) this.gaveUp = true;
      }
    } finally {
      this.pumping = false;
    }
  }

  private set(svc: Svc, state: ServiceState, attemptNo: number): void {
    this.status.set(svc, { state, attempt: attemptNo, since: this.ctx.clock.now() });
  }

  /** False when the service could not start and the term was resigned. */
  private async startOne(svc: Svc): Promise<boolean> {
    const { ctx, term } = this;
    const fields = { lease: ctx.name, token: term.token, service: svc.name };
    for (let n = 1; n <= svc.attempts; n++) {
      // Each attempt re-checks leadership against the clock: a retry timer can fire after the
      // trust window closed, before anything demoted the term.
      if (this.ended || svc.removed || !ctx.isLeader() || ctx.term() !== term) return true;
      this.set(svc, n === 1 ? "starting" : "retrying", n);
      let value: unknown;
      let settle!: () => void;
      const settled = new Promise<void>((r) => {
        settle = r;
      });
      this.inflight = { svc, done: settled };
      try {
        value = await callAsync(() => svc.def.start(term));
      } catch (e) {
        settle();
        if (this.inflight?.done === settled) this.inflight = null;
        if (this.ended || svc.removed) return true;
        ctx.reportError(toError(e));
        if (n === svc.attempts) {
          ctx.logger.error("service failed to start", { ...fields, attempt: n, err: e });
          break;
        }
        // Not running while it waits for the next attempt: health says so at once.
        this.set(svc, "retrying", n);
        const delayMs = backoffDelay(
          n,
          { initialMs: svc.initialDelayMs, maxMs: svc.maxDelayMs, jitter: svc.jitter },
          ctx.random,
        );
        ctx.logger.warn("service failed to start; retrying", {
          ...fields,
          attempt: n,
          delayMs,
          err: e,
        });
        if (!(await pause(ctx.clock, delayMs, this.ac.signal))) return true;
        continue;
      }
      if (this.ended || svc.removed) {
        // A start left over from a term that has ended: undo exactly what it started.
        ctx.logger.warn(
          "service start returned after its term ended; stopping what it started",
          fields,
        );
        await stopOne(ctx, term, svc, value, svc.removed ? "stopped" : this.reason);
        settle();
        return true;
      }
      settle();
      if (this.inflight?.done === settled) this.inflight = null;
      this.started.push({ svc, value });
      this.set(svc, "running", n);
      if (n > 1) ctx.logger.info("service started", { ...fields, attempt: n });
      return true;
    }
    this.set(svc, "failed", svc.attempts);
    ctx.logger.error("service could not start; resigning so another process can try", fields);
    ctx.resignTerm(term).catch((e) => ctx.reportError(toError(e)));
    return false;
  }

  /**
   * Ends the runner: waits (bounded by the service's stopTimeoutMs) for a
   * start still in progress to return and be stopped, so no newer term's
   * instance runs beside it (ARCHITECTURE rule 4); then stops every started
   * service exactly once, in reverse start order.
   */
  async end(reason: DemotionReason): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      this.reason = reason;
      this.ac.abort();
    }
    const inflight = this.inflight;
    this.inflight = null;
    if (inflight) await this.awaitStale(inflight.svc, inflight.done);
    while (this.started.length > 0) {
      const { svc, value } = this.started.pop()!;
      this.set(svc, "stopped", 0);
      await stopOne(this.ctx, this.term, svc, value, reason);
    }
  }

  private async awaitStale(svc: Svc, done: Promise<unknown>): Promise<void> {
    const { ctx, term } = this;
    if ((await raceDeadline(ctx.clock, done, svc.stopTimeoutMs)) !== TIMED_OUT) return;
    ctx.logger.error("service start of an ended term still running; not waiting any longer", {
      lease: ctx.name,
      token: term.token,
      service: svc.name,
      delayMs: svc.stopTimeoutMs,
    });
    ctx.reportError(
      new TimeoutError(
        `tenure service "${svc.name}": a start of ended term ${term.token} did not return and stop within ${svc.stopTimeoutMs} ms`,
      ),
    );
  }

  /** Stops one service (unregistered while running). */
  async remove(svc: Svc): Promise<void> {
    const i = this.started.findIndex((s) => s.svc === svc);
    if (i < 0) return;
    const [{ value }] = this.started.splice(i, 1) as [{ svc: Svc; value: unknown }];
    this.set(svc, "stopped", 0);
    await stopOne(this.ctx, this.term, svc, value, "stopped");
  }

  problem(): string | null {
    if (this.ended) return null;
    const now = this.ctx.clock.now();
    for (const svc of this.queue) {
      if (svc.removed) continue;
      const st = this.status.get(svc);
      if (!st || st.state === "running") continue;
      if (st.state === "failed") return `service "${svc.name}" failed to start`;
      if (st.state === "retrying")
        return `service "${svc.name}" is not running (start attempt ${st.attempt} of ${svc.attempts})`;
      if (st.state === "starting" && now - st.since > svc.startGraceMs) {
        return `service "${svc.name}" has been starting for ${Math.round(now - st.since)} ms`;
      }
    }
    return null;
  }
}

async function stopOne(
  ctx: LeaderContext,
  term: Term,
  svc: Svc,
  value: unknown,
  reason: DemotionReason,
): Promise<void> {
  const fields = { lease: ctx.name, token: term.token, service: svc.name, reason };
  try {
    const r = await raceDeadline(
      ctx.clock,
      callAsync(() => svc.def.stop(reason, { term, value })),
      svc.stopTimeoutMs,
    );
    if (r === TIMED_OUT) {
      ctx.logger.error("service did not stop in time; abandoning it", {
        ...fields,
        delayMs: svc.stopTimeoutMs,
      });
      ctx.reportError(
        new TimeoutError(
          `tenure service "${svc.name}": stop did not finish within ${svc.stopTimeoutMs} ms`,
        ),
      );
    } else {
      ctx.logger.info("service stopped", fields);
    }
  } catch (e) {
    ctx.logger.error("service stop failed", { ...fields, err: e });
    ctx.reportError(toError(e));
  }
}

/** Status of one service, for health and metrics. */
export interface ServiceStatus {
  readonly name: string;
  readonly state: ServiceState;
  /** Start attempt in the current term (0 before the first). */
  readonly attempt: number;
}

/** Leader-only services of one elector. */
export class ServiceSet {
  private readonly services: Svc[] = [];
  private runner: TermServices | null = null;
  private teardown: Promise<void> = Promise.resolve();

  constructor(private readonly ctx: LeaderContext) {}

  add<T>(def: ServiceDefinition<T>): () => void {
    const svc = resolveService(def as ServiceDefinition<unknown>);
    if (this.services.some((s) => s.name === svc.name)) {
      throw new ConfigError("service.name", `a service named "${svc.name}" is already registered`);
    }
    this.services.push(svc);
    const r = this.runner;
    if (r && !r.ended) r.add(svc);
    return () => {
      if (svc.removed) return;
      svc.removed = true;
      const i = this.services.indexOf(svc);
      if (i >= 0) this.services.splice(i, 1);
      const cur = this.runner;
      if (cur && !cur.ended) void cur.remove(svc);
    };
  }

  onElected(term: Term): void {
    const r = new TermServices(this.ctx, term, [...this.services]);
    this.runner = r;
    const prev = this.teardown;
    // A newer term starts its services once the previous term's have stopped (bounded).
    void raceDeadline(this.ctx.clock, prev, PREVIOUS_TERM_WAIT_MS).then(() => r.pump());
  }

  onTermEnded(term: Term, reason: DemotionReason): Promise<void> {
    const r = this.runner;
    if (!r || r.term !== term) return this.teardown;
    const done = r.end(reason);
    this.teardown = Promise.all([this.teardown, done]).then(() => undefined);
    return done;
  }

  problem(): string | null {
    return this.runner?.problem() ?? null;
  }

  status(): ServiceStatus[] {
    const r = this.runner;
    return this.services.map((s) => {
      const st = r && !r.ended ? r.status.get(s) : undefined;
      return { name: s.name, state: st?.state ?? "idle", attempt: st?.attempt ?? 0 };
    });
  }

  async close(): Promise<void> {
    const r = this.runner;
    if (r && !r.ended) await this.onTermEnded(r.term, "stopped");
    await this.teardown;
  }
}
