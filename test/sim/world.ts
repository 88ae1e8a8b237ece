/**
 * The simulated world: N processes (one elector each, with leader work) and
 * one store, all in this process on one FakeClock. Nothing happens on its
 * own: every timer firing, store arrival, store reply and notification is an
 * event in one queue, and the scheduler picks which ready event runs next
 * with draws from the seeded Source. After each event every promise
 * continuation runs (one setImmediate drains the microtask queue) before the
 * next event is chosen, so a run is a pure function of its tape.
 */
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Clock } from "../../src/clock.js";
import type { createElector as CreateElector, Elector } from "../../src/elector/index.js";
import type { LeaderInfo, Term } from "../../src/elector/types.js";
import type { StoreError as StoreErrorClass } from "../../src/errors.js";
import type { Logger } from "../../src/logger.js";
import type {
  AcquireResult,
  FencedPutResult,
  FencedValue,
  LeaseEvent,
  LeaseInfo,
  LeaseRef,
  LeaseStore,
  RenewResult,
  Unwatch,
} from "../../src/store/types.js";
import type { MemoryStore as MemoryStoreClass } from "../../src/stores/memory/index.js";
import type { FakeClock as FakeClockClass } from "../../src/testing/fake-clock.js";
import { Checker, Violation } from "./checker.js";
import { Heap } from "./heap.js";
import type { Source } from "./source.js";

/** The modules under test; a planted-bug run loads them from a mutated copy of dist/src. */
export interface Tenure {
  readonly createElector: typeof CreateElector;
  readonly MemoryStore: typeof MemoryStoreClass;
  readonly StoreError: typeof StoreErrorClass;
  readonly FakeClock: typeof FakeClockClass;
}

/** The compiled sources this file was built with (dist/src). */
export const DIST_SRC = fileURLToPath(new URL("../../src/", import.meta.url));

/** Loads the modules under test from a compiled `src` directory. */
export async function loadTenure(srcDir = DIST_SRC): Promise<Tenure> {
  const imp = (p: string) => import(pathToFileURL(join(srcDir, p)).href);
  const [el, mem, err, fc] = await Promise.all([
    imp("elector/index.js"),
    imp("stores/memory/index.js"),
    imp("errors.js"),
    imp("testing/fake-clock.js"),
  ]);
  return {
    createElector: el.createElector,
    MemoryStore: mem.MemoryStore,
    StoreError: err.StoreError,
    FakeClock: fc.FakeClock,
  };
}

/** Timing of every simulated elector and the workload. */
export const SIM_TIMING = Object.freeze({
  ttlMs: 1_000,
  safetyMarginMs: 100,
  renewIntervalMs: 333,
  retryMs: 200,
  /** Largest normal one-way latency. */
  maxLatencyMs: 4,
  /** A lost reply surfaces as the driver's timeout after this long. */
  lostReplyTimeoutMs: 1_500,
  tickMs: 150,
  /** Every backoff in the workload starts at 100 ms with ±10 % jitter. */
  minLogStepMs: 90,
});

/** Liveness bound after faults stop: ttl + retry, plus the follower jitter (≤ 50 ms) and round trips. */
export const LIVENESS_BOUND_MS =
  SIM_TIMING.ttlMs + SIM_TIMING.retryMs + 50 + 10 * SIM_TIMING.maxLatencyMs;

const LEASE = "sim";

export type FaultKind =
  | "reply-delayed"
  | "request-delayed"
  | "reply-lost"
  | "error-before-apply"
  | "error-after-apply"
  | "pause"
  | "crash"
  | "store-restart"
  | "store-restart-no-data"
  | "force-release"
  | "service-start-fails"
  | "stream-fails";

interface SimEvent {
  readonly at: number;
  readonly seq: number;
  readonly owner: Inc | null;
  readonly label: string;
  readonly fire: () => void;
  readonly faulty: boolean;
  cancelled: boolean;
}

/**
 * What runs inside one simulated process. Today that is one elector; groups
 * of partitions (DESIGN §7) will be another participant kind with their own
 * liveness view (owned partitions) checked the same way.
 */
export interface Participant {
  start(): Promise<void>;
  isLeader(): boolean;
  term(): Term | null;
  leader(): LeaderInfo | null;
}

/** One incarnation of a simulated process (a crash ends it; a restart makes a new one). */
class Inc {
  alive = true;
  paused = false;
  pauseId = 0;
  held: SimEvent[] = [];
  readonly watchers = new Set<(e: LeaseEvent) => void>();
  participant!: Participant;
  constructor(
    readonly id: number,
    readonly slot: number,
    readonly holder: string,
  ) {}
}

/** The store's state for one run of the server: a MemoryStore plus what a restart changes. */
class StoreRun {
  constructor(
    readonly backing: MemoryStoreClass,
    /** Added to the memory store's tokens: a restart without data floors tokens by the store clock, as the Redis store does. */
    readonly offset: bigint,
    /** Restart guard (as the Redis store): no free lease is granted before this time. */
    readonly guardUntil: number,
  ) {}
  /**
   * The memory store's token for `token`. A token from before a restart
   * without data maps to 0, which no term ever has (stores accept it and it
   * never matches).
   */
  int(token: bigint): bigint {
    const t = token - this.offset;
    return t > 0n ? t : 0n;
  }
  ext(info: LeaseInfo | null): LeaseInfo | null {
    return info ? { ...info, token: info.token + this.offset } : null;
  }
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface WorldStats {
  steps: number;
  simMs: number;
  episodes: number;
  livenessChecks: number;
  faults: Record<string, number>;
  elections: number;
  grants: number;
  trustChecks: number;
  fencedAccepted: number;
  fencedRejected: number;
}

export class World {
  readonly fake: FakeClockClass;
  readonly checker: Checker;
  private readonly heap = new Heap<SimEvent>();
  private ready: SimEvent[] = [];
  private seq = 0;
  private readonly slots: Inc[] = [];
  private nextInc = 1;
  private store!: StoreRun;
  private storeDown = false;
  private storeDownId = 0;
  private faultsOn = false;
  private readonly pendingFaulty = new Set<SimEvent>();
  violation: Violation | null = null;
  readonly stats: WorldStats = {
    steps: 0,
    simMs: 0,
    episodes: 0,
    livenessChecks: 0,
    faults: {},
    elections: 0,
    grants: 0,
    trustChecks: 0,
    fencedAccepted: 0,
    fencedRejected: 0,
  };
  private readonly startAt: number;
  /** Fault kinds this world may inject (all by default). */
  private readonly allowed: ReadonlySet<FaultKind> | null;

  constructor(
    private readonly t: Tenure,
    private readonly src: Source,
    readonly processes: number,
    opts: { faults?: readonly FaultKind[] } = {},
  ) {
    this.fake = new t.FakeClock();
    this.startAt = this.fake.now();
    this.checker = new Checker({
      ttlMs: SIM_TIMING.ttlMs,
      safetyMarginMs: SIM_TIMING.safetyMarginMs,
      minLogStepMs: SIM_TIMING.minLogStepMs,
    });
    this.allowed = opts.faults ? new Set(opts.faults) : null;
  }

  now(): number {
    return this.fake.now();
  }

  // ------------------------------------------------------------- scheduling

  schedule(delay: number, owner: Inc | null, label: string, fire: () => void, faulty = false) {
    const ev: SimEvent = {
      at: this.fake.now() + Math.max(0, delay),
      seq: this.seq++,
      owner,
      label,
      fire,
      faulty,
      cancelled: false,
    };
    this.heap.push(ev);
    if (faulty) this.pendingFaulty.add(ev);
    return ev;
  }

  private cancel(ev: SimEvent): void {
    ev.cancelled = true;
    this.pendingFaulty.delete(ev);
  }

  /** Runs `fn`, keeping the first Violation it throws (never throwing into the code under test). */
  check(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof Violation)) throw e;
      this.violation ??= e;
    }
  }

  private nextEvent(): SimEvent | null {
    for (;;) {
      if (this.ready.length === 0) {
        while (this.heap.size > 0 && this.heap.peek()!.cancelled) this.heap.pop();
        const top = this.heap.peek();
        if (!top) return null;
        const now = this.fake.now();
        if (top.at > now) {
          this.check(() => this.checker.beforeAdvance(now));
          if (this.violation) return null;
          this.fake.stall(top.at - now);
        }
        while (this.heap.size > 0 && this.heap.peek()!.at <= top.at) {
          const e = this.heap.pop()!;
          if (!e.cancelled) this.ready.push(e);
        }
        continue;
      }
      const i = this.ready.length === 1 ? 0 : this.src.int(this.ready.length);
      const ev = this.ready[i]!;
      this.ready[i] = this.ready[this.ready.length - 1]!;
      this.ready.pop();
      if (ev.cancelled) continue;
      const o = ev.owner;
      if (o && !o.alive) {
        this.pendingFaulty.delete(ev);
        continue;
      }
      if (o?.paused) {
        o.held.push(ev);
        continue;
      }
      return ev;
    }
  }

  /** Runs until `maxSteps` events have run or an invariant fails. */
  async run(maxSteps: number): Promise<Violation | null> {
    this.store = this.newStoreRun(0n, 0);
    for (let s = 0; s < this.processes; s++) this.boot(s, `p${s}`);
    this.schedule(0, null, "episode", () => this.episode());
    while (this.stats.steps < maxSteps && !this.violation) {
      const ev = this.nextEvent();
      if (!ev) break;
      this.pendingFaulty.delete(ev);
      this.stats.steps += 1;
      ev.fire();
      await new Promise<void>((r) => setImmediate(r));
    }
    this.stats.simMs = this.fake.now() - this.startAt;
    const c = this.checker.counts;
    this.stats.grants = c.grants;
    this.stats.trustChecks = c.trustChecks;
    this.stats.fencedAccepted = c.fencedAccepted;
    this.stats.fencedRejected = c.fencedRejected;
    this.stats.livenessChecks = c.livenessChecks;
    return this.violation;
  }

  private countFault(kind: FaultKind): void {
    this.stats.faults[kind] = (this.stats.faults[kind] ?? 0) + 1;
  }

  /** A fault decision: allowed kinds only, and only while faults are on. Counted. */
  private fault(kind: FaultKind, p: number): boolean {
    if (!this.decide(kind, p)) return false;
    this.countFault(kind);
    return true;
  }

  /** A fault decision, not counted (the caller counts what it injects). */
  private decide(kind: FaultKind, p: number): boolean {
    if (!this.faultsOn) return false;
    const yes = this.src.fault(p);
    return yes && (!this.allowed || this.allowed.has(kind));
  }

  // ------------------------------------------------------------ the store

  private newStoreRun(offset: bigint, guardUntil: number): StoreRun {
    const backing = new this.t.MemoryStore({ clock: this.fake });
    const run = new StoreRun(backing, offset, guardUntil);
    void backing.watch(LEASE, (e) => this.onNotify(run, e));
    return run;
  }

  private onNotify(run: StoreRun, e: LeaseEvent): void {
    if (run !== this.store) return;
    for (const inc of this.slots) {
      if (!inc.alive || inc.watchers.size === 0) continue;
      this.schedule(this.latency(), inc, `notify ${e.type}`, () => {
        this.checker.onNotify(inc.id, this.now());
        for (const fn of [...inc.watchers]) fn(e);
      });
    }
  }

  private latency(): number {
    return this.src.range(0, SIM_TIMING.maxLatencyMs);
  }

  private storeError(message: string, code: string): Error {
    return new this.t.StoreError(`tenure sim: ${message}`, {
      transient: true,
      kind: code === "ETIMEDOUT" ? "timeout" : "connection",
      code,
    });
  }

  /**
   * One store round trip from `inc`: the request arrives after a latency
   * (an event), is applied to the store of that moment (or fails), and the
   * reply comes back after another latency (an event owned by `inc`: held
   * while it is paused, dropped once it crashed).
   */
  call<T>(
    inc: Inc,
    op: string,
    apply: (run: StoreRun) => Promise<T>,
    onReply?: (r: Outcome<T>, sentAt: number) => void,
  ): Promise<T> {
    const sentAt = this.fake.now();
    return new Promise<T>((resolve, reject) => {
      // Every decision is drawn whatever the others say, so removing one fault (zeroing its
      // draw) leaves the rest of the tape meaning what it meant: that is what lets shrinking work.
      const kinds: [FaultKind, number][] = [
        ["reply-delayed", 0.02],
        ["request-delayed", 0.01],
        ["reply-lost", 0.01],
        ["error-before-apply", 0.01],
        ["error-after-apply", 0.01],
      ];
      const hits = kinds.map(([k, p]) => this.decide(k, p));
      const idx = hits.indexOf(true);
      const kind: FaultKind | null = idx >= 0 ? kinds[idx]![0] : null;
      if (kind) this.countFault(kind);
      const delays = this.faultsOn
        ? [this.src.range(100, 1_200), this.src.range(100, 1_200)]
        : [0, 0];
      const there = this.latency() + (kind === "request-delayed" ? delays[0]! : 0);
      const reply = (r: Outcome<T>, delay: number, faulty: boolean) => {
        this.schedule(
          delay,
          inc,
          `${op} reply`,
          () => {
            if (onReply) this.check(() => onReply(r, sentAt));
            if (r.ok) resolve(r.value);
            else reject(r.error);
          },
          faulty,
        );
      };
      this.schedule(
        there,
        null,
        `${op} arrives`,
        () => {
          const back = this.latency();
          if (this.storeDown) {
            reply(
              { ok: false, error: this.storeError("connection refused", "ECONNREFUSED") },
              back,
              false,
            );
            return;
          }
          if (kind === "error-before-apply") {
            reply(
              { ok: false, error: this.storeError(`${op}: connection reset`, "ECONNRESET") },
              back,
              false,
            );
            return;
          }
          const run = this.store;
          apply(run).then(
            (value) => {
              if (kind === "reply-lost") {
                const err = this.storeError(`${op}: no reply`, "ETIMEDOUT");
                reply({ ok: false, error: err }, SIM_TIMING.lostReplyTimeoutMs, true);
              } else if (kind === "error-after-apply") {
                reply(
                  { ok: false, error: this.storeError(`${op}: connection reset`, "ECONNRESET") },
                  back,
                  false,
                );
              } else {
                const extra = kind === "reply-delayed" ? delays[1]! : 0;
                reply({ ok: true, value }, back + extra, extra > 0);
              }
            },
            (error: Error) => reply({ ok: false, error }, back, false),
          );
        },
        kind === "request-delayed",
      );
    });
  }

  private makeStore(inc: Inc): LeaseStore {
    const w = this;
    const ck = this.checker;
    return {
      kind: "memory",
      notifies: true,
      acquire(name, holder, ttlMs): Promise<AcquireResult> {
        return w.call(
          inc,
          "acquire",
          async (run) => {
            const now = w.now();
            if (now < run.guardUntil && (await run.backing.read(name)) === null) {
              return { acquired: false, current: null, retryInMs: run.guardUntil - now };
            }
            const before = await run.backing.read(name);
            const r = await run.backing.acquire(name, holder, ttlMs);
            if (!r.acquired) return { acquired: false, current: run.ext(r.current) };
            const token = r.lease.token + run.offset;
            if (before?.holder === holder && before.token === r.lease.token) {
              // The holder's own live term goes on (extended, as by a renewal): not a new grant.
              ck.note(w.now(), `store answers ${holder}'s live term ${token} again (#${inc.id})`);
            } else {
              w.check(() => ck.onGrant(token, w.now()));
              ck.note(w.now(), `store grants token ${token} to ${holder} (#${inc.id})`);
            }
            return { acquired: true, lease: { ...r.lease, token } };
          },
          (r, sentAt) => {
            if (r.ok && r.value.acquired) {
              ck.onAcquireReply(inc.id, inc.holder, r.value.lease.token, sentAt, w.now());
            }
          },
        );
      },
      renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
        return w.call(
          inc,
          "renew",
          async (run) => {
            const r = await run.backing.renew({ ...lease, token: run.int(lease.token) }, ttlMs);
            return r.renewed ? r : { renewed: false, current: run.ext(r.current) };
          },
          (r, sentAt) => {
            if (r.ok) ck.onRenewReply(inc.id, lease.token, sentAt, w.now(), r.value.renewed);
          },
        );
      },
      release(lease: LeaseRef): Promise<boolean> {
        ck.onReleaseSent(inc.id, lease.token, w.now());
        ck.note(w.now(), `#${inc.id} sends release of token ${lease.token}`);
        return w.call(inc, "release", (run) =>
          run.backing.release({ ...lease, token: run.int(lease.token) }),
        );
      },
      read(name: string): Promise<LeaseInfo | null> {
        return w.call(inc, "read", async (run) => run.ext(await run.backing.read(name)));
      },
      list(): Promise<LeaseInfo[]> {
        return w.call(inc, "list", async (run) =>
          (await run.backing.list()).map((i) => run.ext(i)!),
        );
      },
      forceRelease(name: string): Promise<boolean> {
        return w.call(inc, "forceRelease", (run) => run.backing.forceRelease(name));
      },
      async watch(_name: string, onChange: (e: LeaseEvent) => void): Promise<Unwatch> {
        inc.watchers.add(onChange);
        return async () => {
          inc.watchers.delete(onChange);
        };
      },
      putFenced(lease, key, value, opts): Promise<FencedPutResult> {
        return w.call(inc, "putFenced", async (run) => {
          const r = await run.backing.putFenced(
            { name: lease.name, holder: lease.holder, token: run.int(lease.token) },
            key,
            value,
            opts,
          );
          w.check(() => ck.onFencedWrite(lease.token, key, r.ok, w.now()));
          return r;
        });
      },
      getFenced(name: string, key: string): Promise<FencedValue | null> {
        return w.call(inc, "getFenced", async (run) => {
          const v = await run.backing.getFenced(name, key);
          return v ? { ...v, token: v.token + run.offset } : null;
        });
      },
      async close() {},
    };
  }

  // ------------------------------------------------------------ processes

  private clockOf(inc: Inc): Clock {
    const w = this;
    return {
      now: () => w.fake.now(),
      wallNow: () => w.fake.wallNow(),
      sleep(ms: number, signal?: AbortSignal): Promise<void> {
        return new Promise<void>((resolve, reject) => {
          if (signal?.aborted) {
            reject(signal.reason);
            return;
          }
          const onAbort = () => {
            w.cancel(ev);
            reject(signal?.reason);
          };
          const ev = w.schedule(ms, inc, "timer", () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          });
          signal?.addEventListener("abort", onAbort, { once: true });
        });
      },
    };
  }

  private loggerOf(inc: Inc): Logger {
    const rec =
      (level: string) =>
      (msg: string, fields: Record<string, unknown> = {}) => {
        this.checker.note(
          this.now(),
          `#${inc.id} ${level} ${msg} token=${String(fields.token ?? "")}`,
        );
        this.check(() => this.checker.log(inc.id, level, msg, fields, this.now()));
      };
    return { debug: () => {}, info: rec("info"), warn: rec("warn"), error: rec("error") };
  }

  private observe(inc: Inc, term: Term, kind: string): void {
    if (!inc.alive) return;
    this.check(() => this.checker.trust(inc.id, inc.holder, term.token, this.now(), kind));
  }

  /** Starts a new incarnation of slot `slot` with holder id `holder`. */
  private boot(slot: number, holder: string): void {
    const inc = new Inc(this.nextInc++, slot, holder);
    this.slots[slot] = inc;
    const clock = this.clockOf(inc);
    const store = this.makeStore(inc);
    const src = this.src;
    const elector: Elector = this.t.createElector({
      store,
      name: LEASE,
      holderId: holder,
      ttlMs: SIM_TIMING.ttlMs,
      safetyMarginMs: SIM_TIMING.safetyMarginMs,
      renewIntervalMs: SIM_TIMING.renewIntervalMs,
      retryMs: SIM_TIMING.retryMs,
      stopTimeoutMs: 1_000,
      clock,
      logger: this.loggerOf(inc),
      random: () => src.float(),
    });
    elector.on("elected", (term) => {
      this.stats.elections += 1;
      this.checker.note(this.now(), `#${inc.id} ${holder} elected token ${term.token}`);
    });
    elector.on("demoted", (d) => {
      this.checker.note(this.now(), `#${inc.id} ${holder} demoted token ${d.token} (${d.reason})`);
    });
    // Leader work: a tick doing a fenced write into the simulated resource,
    elector.every(SIM_TIMING.tickMs, async (term) => {
      this.observe(inc, term, "tick");
      await store.putFenced(term, "resource", String(this.now()));
    });
    // a service with slow and failing starts,
    elector.service<number>({
      name: "svc",
      startRetry: { attempts: 3, initialDelayMs: 100, maxDelayMs: 400 },
      stopTimeoutMs: 200,
      start: async (term) => {
        this.check(() => this.checker.serviceStartCalled(inc.id, holder, term.token, this.now()));
        const slow = src.chance(0.4);
        const slowMs = src.range(100, 2_000);
        const quickMs = src.range(0, 20);
        await clock.sleep(slow ? slowMs : quickMs);
        if (this.fault("service-start-fails", 0.3)) throw new Error("service start failed");
        return this.checker.serviceStarted(inc.id, term.token, this.now());
      },
      stop: async (_reason, started) => {
        this.check(() =>
          this.checker.serviceStopCalled(inc.id, started.value, started.term.token, this.now()),
        );
        await clock.sleep(src.range(0, 20));
      },
    });
    // and a stream with fenced checkpoints.
    elector.stream({
      name: "feed",
      recovery: { strategy: "reconnect", initialDelayMs: 100, maxDelayMs: 800 },
      stopTimeoutMs: 300,
      run: async (term, ctx) => {
        this.observe(inc, term, "stream run");
        let n = Number((await ctx.checkpoint.load()) ?? "0");
        while (!ctx.signal.aborted) {
          try {
            await clock.sleep(src.range(20, 150), ctx.signal);
          } catch {
            return;
          }
          if (this.fault("stream-fails", 0.03)) throw new Error("stream broke");
          n += 1;
          await ctx.checkpoint.save(String(n));
          ctx.healthy();
        }
      },
    });
    inc.participant = elector;
    void elector.start();
    // The application probes isLeader()/term() now and then (as a health check or a request would).
    const probe = async () => {
      for (;;) {
        await clock.sleep(src.range(30, 150));
        const term = elector.term();
        if (term) this.observe(inc, term, "isLeader() probe");
      }
    };
    void probe();
  }

  private crash(slot: number): void {
    const inc = this.slots[slot]!;
    if (!inc.alive) return;
    inc.alive = false;
    this.checker.onCrash(inc.id, this.now());
    this.checker.note(this.now(), `#${inc.id} ${inc.holder} crashes`);
    for (const ev of inc.held) this.pendingFaulty.delete(ev);
    inc.held = [];
  }

  private pause(slot: number, ms: number): void {
    const inc = this.slots[slot]!;
    if (!inc.alive || inc.paused) return;
    inc.paused = true;
    const id = ++inc.pauseId;
    this.checker.onPause(inc.id);
    this.checker.note(this.now(), `#${inc.id} ${inc.holder} paused for ${ms} ms`);
    this.schedule(ms, null, "resume", () => {
      if (inc.pauseId === id) this.resume(inc);
    });
  }

  private resume(inc: Inc): void {
    if (!inc.paused) return;
    inc.paused = false;
    inc.pauseId += 1;
    this.checker.onResume(inc.id, this.now());
    this.checker.note(this.now(), `#${inc.id} ${inc.holder} resumed`);
    for (const ev of inc.held) if (!ev.cancelled) this.ready.push(ev);
    inc.held = [];
  }

  private restartStore(withData: boolean, downMs: number): void {
    this.storeDown = true;
    const id = ++this.storeDownId;
    this.checker.note(
      this.now(),
      `store restarts (${withData ? "with" : "without"} data, down ${downMs} ms)`,
    );
    this.schedule(downMs, null, "store up", () => {
      if (this.storeDownId === id) this.storeUp(withData);
    });
  }

  private storeUp(withData: boolean): void {
    if (!this.storeDown) return;
    this.storeDown = false;
    this.storeDownId += 1;
    if (!withData) {
      const now = this.now();
      this.store = this.newStoreRun(BigInt(now) * 1000n, now + SIM_TIMING.ttlMs);
    }
  }

  private forceRelease(): void {
    if (this.storeDown) return;
    const run = this.store;
    void run.backing.read(LEASE).then((cur) => {
      const token = cur ? cur.token + run.offset : null;
      this.checker.onForceRelease(token, this.now());
      return run.backing.forceRelease(LEASE);
    });
  }

  // ------------------------------------------------------------ episodes

  /** One episode: a fault phase, then quiet until the liveness check, then the next episode. */
  private episode(): void {
    this.stats.episodes += 1;
    this.faultsOn = true;
    const src = this.src;
    const phaseMs = src.range(300, 4_000);
    for (let k = 0; k < 3; k++) {
      const kinds: FaultKind[] = [
        "pause",
        "pause",
        "crash",
        "store-restart",
        "store-restart-no-data",
        "force-release",
      ];
      const kind = kinds[src.int(kinds.length)]!;
      const yes = this.decide(kind, 0.5);
      const at = src.range(0, phaseMs);
      const anySlot = src.int(this.processes);
      const atLeader = src.chance(0.6);
      const ms = src.range(50, 2_500);
      const sameHolder = src.chance(0.5);
      if (!yes) continue;
      this.countFault(kind);
      this.schedule(at, null, kind, () => {
        if (!this.faultsOn) return;
        // Most pauses and crashes hit whoever leads then: that is where the interesting races are.
        const leading = atLeader
          ? this.slots.findIndex((i) => i.alive && i.participant.term())
          : -1;
        const slot = leading >= 0 ? leading : anySlot;
        switch (kind) {
          case "pause":
            return this.pause(slot, ms);
          case "crash": {
            const inc = this.slots[slot]!;
            this.crash(slot);
            this.schedule(ms, null, "restart", () => {
              if (this.slots[slot] === inc)
                this.boot(slot, sameHolder ? inc.holder : `${inc.holder}'`);
            });
            return;
          }
          case "store-restart":
            return this.restartStore(true, ms % 800);
          case "store-restart-no-data":
            return this.restartStore(false, ms % 800);
          case "force-release":
            return this.forceRelease();
        }
      });
    }
    this.schedule(phaseMs, null, "faults end", () => this.endFaults());
  }

  private endFaults(): void {
    this.faultsOn = false;
    for (const inc of this.slots) if (inc.paused) this.resume(inc);
    for (let s = 0; s < this.slots.length; s++) {
      const inc = this.slots[s]!;
      if (!inc.alive) this.boot(s, inc.holder);
    }
    this.storeUp(true);
    // Faults have stopped once the last delayed or lost message is delivered.
    let quietAt = this.now();
    for (const ev of this.pendingFaulty) if (!ev.cancelled) quietAt = Math.max(quietAt, ev.at);
    this.checker.note(this.now(), `faults end; quiet from ${quietAt}`);
    this.schedule(quietAt - this.now() + LIVENESS_BOUND_MS, null, "liveness check", () =>
      this.checkLiveness(quietAt),
    );
  }

  private checkLiveness(quietAt: number): void {
    this.checker.livenessChecked();
    const now = this.now();
    const live = this.slots.filter((i) => i.alive);
    const leaders = live.filter((i) => i.participant.isLeader());
    const views = live
      .map((i) => {
        const l = i.participant.leader();
        return `${i.holder}: ${i.participant.isLeader() ? "leads" : `names ${l ? `${l.holder}/${l.token}` : "nobody"}`}`;
      })
      .join(", ");
    this.check(() => {
      if (leaders.length !== 1) {
        throw new Violation(
          "liveness",
          `${now - quietAt} ms after faults stopped (bound ${LIVENESS_BOUND_MS}), ${leaders.length} processes lead (${views})`,
          now,
        );
      }
      const l = leaders[0]!;
      const term = l.participant.term()!;
      this.checker.trust(l.id, l.holder, term.token, now, "liveness check");
      for (const i of live) {
        if (i === l) continue;
        const named = i.participant.leader();
        if (!named || named.holder !== l.holder || named.token !== term.token) {
          throw new Violation(
            "liveness",
            `${now - quietAt} ms after faults stopped, ${i.holder} does not name the leader ${l.holder}/${term.token} (${views})`,
            now,
          );
        }
      }
    });
    this.schedule(this.src.range(0, 500), null, "episode", () => this.episode());
  }
}
