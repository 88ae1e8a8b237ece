import { Cron } from "croner";
import { callAsync, pause } from "../async.js";
import { ConfigError, type DemotionReason, toError } from "../errors.js";
import { checkInt, MAX_TIMER_MS } from "../limits.js";
import type { Term } from "../term.js";
import type { LeaderContext } from "./hooks.js";
import { anySignal } from "./util.js";

/** What a tick function receives besides the term. */
export interface TickInfo {
  /** Scheduled fire time (wall-clock ms since the epoch) for cron and claimed ticks; else the monotonic due time. */
  readonly scheduledAt: number;
  /** True when this run catches up a fire time missed during a failover. */
  readonly catchUp: boolean;
  /**
   * When (the elector's monotonic clock, ms) this run's leadership check began: the run goes
   * ahead only if the term was still inside its trust window then. A process frozen between
   * the check and the first line of `fn` (a stop, a long GC pause) reads a later time there.
   */
  readonly checkedAt: number;
}

/** A tick function: runs only while leader, with the current term. */
export type TickFn = (term: Term, info: TickInfo) => unknown;

/** Options of `every` and `cron`. */
export interface TickOptions {
  /** Name for logs, metrics and (with `claim`) the store key. Default `every:<ms>` / `cron:<expr>`. Required with `claim`. */
  name?: string;
  /**
   * Exactly-once fire times across the fleet: each fire time is claimed in the
   * store under the fencing token before it runs (at most once per fire time,
   * even across a leadership change). `every` ticks then fire on wall-clock
   * multiples of `ms`. Default false.
   */
  claim?: boolean;
  /** With `claim`: fire times missed while nobody led that a new leader runs on election (latest first kept). Default 1; 0 disables catch-up. */
  catchUpLimit?: number;
}

/** Options of `every`. */
export interface EveryOptions extends TickOptions {
  /** Run once right after election instead of waiting `ms` first (ignored with `claim`). Default false. */
  immediate?: boolean;
}

/** Options of `cron`. */
export interface CronOptions extends TickOptions {
  /** IANA time zone the expression is read in, e.g. `Europe/Berlin`. Default: the process's local zone. */
  timezone?: string;
}

/** Defaults of tick options. */
export const TICK_DEFAULTS = Object.freeze({ catchUpLimit: 1, claim: false, immediate: false });

/** Counters of one tick, for metrics. */
export interface TickStats {
  readonly name: string;
  /** Runs started. */
  runs: number;
  /** Fire times skipped because the previous run was still going. */
  skips: number;
  /** Runs that threw or rejected. */
  errors: number;
  /** Fire times that found this process not leading (zombie ticks prevented). */
  notLeader: number;
  /** Claimed fire times already claimed by another term (or fenced off). */
  claimLost: number;
}

type Schedule =
  | { readonly kind: "interval"; readonly ms: number }
  | {
      readonly kind: "wall";
      next(afterWall: number): number | null;
      previous(n: number, atOrBeforeWall: number): number[];
    };

interface Tick {
  readonly name: string;
  readonly fn: TickFn;
  readonly schedule: Schedule;
  readonly claim: boolean;
  readonly catchUpLimit: number;
  readonly immediate: boolean;
  readonly ac: AbortController;
  running: boolean;
  readonly stats: TickStats;
}

/** Longest single clock sleep while waiting for a wall-clock fire time, so wall-clock jumps are noticed. */
const MAX_WALL_SLEEP_MS = 60_000;

/** Store key of a claimed tick's "last claimed fire time". */
export function tickClaimKey(name: string): string {
  return `tick:${name}`;
}

function validateCommon(
  o: TickOptions,
  defName: string,
): { name: string; claim: boolean; catchUpLimit: number } {
  if (o === null || typeof o !== "object") throw new ConfigError("options", "must be an object");
  const claim = o.claim ?? TICK_DEFAULTS.claim;
  if (typeof claim !== "boolean") throw new ConfigError("claim", "must be true or false");
  if (claim && o.name === undefined) {
    throw new ConfigError("name", "is required with claim: true (it names the claim in the store)");
  }
  const name = o.name ?? defName;
  if (typeof name !== "string" || name.length === 0 || name.length > 200) {
    throw new ConfigError("name", "must be a non-empty string of at most 200 characters");
  }
  const catchUpLimit = o.catchUpLimit ?? TICK_DEFAULTS.catchUpLimit;
  checkInt("catchUpLimit", catchUpLimit, 0, 1000);
  return { name, claim, catchUpLimit };
}

/** Leader-only ticks of one elector. */
export class TickSet {
  private readonly ticks: Tick[] = [];
  private term: Term | null = null;

  constructor(private readonly ctx: LeaderContext) {}

  every(ms: number, fn: TickFn, opts: EveryOptions = {}): () => void {
    checkInt("ms", ms, 1, MAX_TIMER_MS, " (ms)");
    const c = validateCommon(opts, `every:${ms}`);
    const schedule: Schedule = c.claim
      ? {
          kind: "wall",
          next: (after) => (Math.floor(after / ms) + 1) * ms,
          previous: (n, at) => {
            const out: number[] = [];
            for (let t = Math.floor(at / ms) * ms; out.length < n; t -= ms) out.push(t);
            return out;
          },
        }
      : { kind: "interval", ms };
    return this.add(fn, schedule, c, opts.immediate ?? TICK_DEFAULTS.immediate);
  }

  cron(expr: string, fn: TickFn, opts: CronOptions = {}): () => void {
    if (typeof expr !== "string" || expr.trim() === "") {
      throw new ConfigError(
        "cron",
        `must be a cron expression such as "*/5 * * * *", got ${JSON.stringify(expr)}`,
      );
    }
    let job: Cron;
    try {
      job = new Cron(expr, { timezone: opts.timezone, paused: true });
    } catch (e) {
      const field = /timezone|time zone/i.test(String(e)) ? "timezone" : "cron";
      throw new ConfigError(
        field,
        `cannot parse ${JSON.stringify(field === "cron" ? expr : opts.timezone)}: ${String((e as Error).message ?? e)}`,
      );
    }
    if (opts.timezone !== undefined) {
      try {
        new Intl.DateTimeFormat("en-US", { timeZone: opts.timezone });
      } catch {
        throw new ConfigError(
          "timezone",
          `must be an IANA time zone such as "Europe/Berlin", got ${JSON.stringify(opts.timezone)}`,
        );
      }
    }
    const c = validateCommon(opts, `cron:${expr}`);
    const schedule: Schedule = {
      kind: "wall",
      next: (after) => job.nextRun(new Date(after))?.getTime() ?? null,
      previous: (n, at) => job.previousRuns(n, new Date(at + 1)).map((d) => d.getTime()),
    };
    return this.add(fn, schedule, c, false);
  }

  private add(
    fn: TickFn,
    schedule: Schedule,
    c: { name: string; claim: boolean; catchUpLimit: number },
    immediate: boolean,
  ): () => void {
    if (typeof fn !== "function") throw new ConfigError("fn", "must be a function");
    const tick: Tick = {
      name: c.name,
      fn,
      schedule,
      claim: c.claim,
      catchUpLimit: c.catchUpLimit,
      immediate,
      ac: new AbortController(),
      running: false,
      stats: { name: c.name, runs: 0, skips: 0, errors: 0, notLeader: 0, claimLost: 0 },
    };
    this.ticks.push(tick);
    const t = this.term;
    if (t && !t.signal.aborted) void this.loop(tick, t);
    return () => {
      tick.ac.abort();
      const i = this.ticks.indexOf(tick);
      if (i >= 0) this.ticks.splice(i, 1);
    };
  }

  onElected(term: Term): void {
    this.term = term;
    for (const t of this.ticks) void this.loop(t, term);
  }

  onTermEnded(term: Term, _reason: DemotionReason): void {
    if (this.term === term) this.term = null;
  }

  close(): void {
    for (const t of this.ticks) t.ac.abort();
    this.term = null;
  }

  stats(): TickStats[] {
    return this.ticks.map((t) => ({ ...t.stats }));
  }

  /** The schedule of one tick for one term. Ends when the term ends or the tick is unregistered. */
  private async loop(tick: Tick, term: Term): Promise<void> {
    const { clock } = this.ctx;
    const signal = anySignal(term.signal, tick.ac.signal);
    try {
      if (tick.schedule.kind === "interval") {
        const { ms } = tick.schedule;
        let due = clock.now() + (tick.immediate ? 0 : ms);
        for (;;) {
          if (!(await pause(clock, due - clock.now(), signal))) return;
          this.fire(tick, term, due, false);
          const now = clock.now();
          due += ms;
          if (due <= now) due += Math.ceil((now - due + 1) / ms) * ms;
        }
      }
      const schedule = tick.schedule;
      let cursor = clock.wallNow();
      if (tick.claim && tick.catchUpLimit > 0)
        cursor = await this.catchUp(tick, term, schedule, signal);
      for (;;) {
        const at = schedule.next(cursor);
        if (at === null) return;
        while (clock.wallNow() < at) {
          if (!(await pause(clock, Math.min(MAX_WALL_SLEEP_MS, at - clock.wallNow()), signal)))
            return;
        }
        cursor = at;
        this.fire(tick, term, at, false);
      }
    } catch (e) {
      this.ctx.logger.error("tick schedule failed", {
        lease: this.ctx.name,
        tick: tick.name,
        err: e,
      });
      this.ctx.reportError(toError(e));
    }
  }

  /** Runs claimed fire times missed since the last claim (at most catchUpLimit); returns the new cursor. */
  private async catchUp(
    tick: Tick,
    term: Term,
    schedule: Extract<Schedule, { kind: "wall" }>,
    signal: AbortSignal,
  ): Promise<number> {
    const now = this.ctx.clock.wallNow();
    let last: number | null = null;
    try {
      const v = await this.ctx.store.getFenced(this.ctx.name, tickClaimKey(tick.name));
      last = v ? Number(v.value) : null;
    } catch (e) {
      this.ctx.logger.warn("cannot read tick claim; skipping catch-up", {
        lease: this.ctx.name,
        tick: tick.name,
        err: e,
      });
      return now;
    }
    if (last === null || !Number.isFinite(last)) return now;
    const missed = schedule
      .previous(tick.catchUpLimit, now)
      .filter((t) => t > (last as number))
      .reverse();
    for (const at of missed) {
      if (signal.aborted) break;
      if (missed.length > 0) {
        this.ctx.logger.info("catching up a missed fire time", {
          lease: this.ctx.name,
          tick: tick.name,
          token: term.token,
          scheduledAt: new Date(at).toISOString(),
        });
      }
      await this.fire(tick, term, at, true);
    }
    return now;
  }

  /** One fire time: leadership is checked against the clock first; a still-running tick is skipped. */
  private fire(tick: Tick, term: Term, scheduledAt: number, catchUp: boolean): Promise<void> {
    const ctx = this.ctx;
    // Read before the check: if the check passes, this time was inside the trust window.
    const checkedAt = ctx.clock.now();
    if (!ctx.isLeader() || ctx.term() !== term) {
      tick.stats.notLeader += 1;
      ctx.logger.debug("tick skipped: not leader", {
        lease: ctx.name,
        tick: tick.name,
        token: term.token,
      });
      return Promise.resolve();
    }
    if (tick.running) {
      tick.stats.skips += 1;
      ctx.logger.warn("tick skipped: previous run still going", {
        lease: ctx.name,
        tick: tick.name,
        token: term.token,
      });
      return Promise.resolve();
    }
    tick.running = true;
    const run = async () => {
      try {
        if (tick.claim && !(await this.claim(tick, term, scheduledAt))) {
          tick.stats.claimLost += 1;
          return;
        }
        if (term.signal.aborted) return;
        tick.stats.runs += 1;
        await callAsync(() => tick.fn(term, { scheduledAt, catchUp, checkedAt }));
      } catch (e) {
        tick.stats.errors += 1;
        ctx.logger.error("tick failed", {
          lease: ctx.name,
          tick: tick.name,
          token: term.token,
          err: e,
        });
        ctx.reportError(toError(e));
      } finally {
        tick.running = false;
      }
    };
    return run();
  }

  /**
   * Claims `at` for `term`: a compare-and-set on the monotonic "last claimed
   * fire time", fenced by the token. False when it was claimed already or the
   * term no longer holds the lease.
   */
  private async claim(tick: Tick, term: Term, at: number): Promise<boolean> {
    const { store, name } = this.ctx;
    const key = tickClaimKey(tick.name);
    for (let i = 0; i < 5; i++) {
      const cur = await store.getFenced(name, key);
      if (cur && Number(cur.value) >= at) return false;
      const r = await store.putFenced(
        { name, holder: term.holder, token: term.token },
        key,
        String(at),
        {
          expect: cur ? cur.value : null,
        },
      );
      if (r.ok) return true;
      if (r.reason === "fenced") return false;
    }
    return false;
  }
}
