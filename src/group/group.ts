import { createHash } from "node:crypto";
import { backoffDelay } from "../backoff.js";
import { createElector, type Elector } from "../elector/elector.js";
import {
  ConfigError,
  type DemotionReason,
  LifecycleError,
  StoreError,
  toError,
} from "../errors.js";
import { type Disposable, describeListenerError, TypedEmitter } from "../events.js";
import type { ServiceDefinition } from "../leader/service.js";
import type { EveryOptions, TickInfo } from "../leader/tick.js";
import type { LeaseInfo, Unwatch } from "../store/types.js";
import type { Term } from "../term.js";
import { type AssignMember, assignPartitions } from "./assign.js";
import { memberLeaseName, parseGroupLeaseTail, partitionLeaseName } from "./names.js";
import { type GroupOptions, type ResolvedGroupOptions, resolveGroupOptions } from "./options.js";

/** How often the group is read again while its last view is not settled (a rebalance in flight): refreshMs / 10, at least 100 ms, at most refreshMs. */
export function unsettledRefreshMs(refreshMs: number): number {
  return Math.min(refreshMs, Math.max(100, Math.floor(refreshMs / 10)));
}

/** A live member of a group, as the store shows it. */
export interface GroupMember {
  readonly holder: string;
  readonly weight: number;
  /** The partition count this member was started with. */
  readonly partitions: number;
}

/** Events of a group; subscribe with `group.on(event, fn)` (returns an unsubscribe function). */
export interface GroupEvents extends Record<string, unknown> {
  /** This process now owns `partition`; `term` is that partition's term (its own token and signal). */
  assigned: { readonly partition: number; readonly term: Term };
  /** This process's term of `partition` ended. */
  revoked: { readonly partition: number; readonly token: bigint; readonly reason: DemotionReason };
  /** A store call, a listener or a misconfigured member (a `ConfigError`). Never thrown. */
  error: Error;
}

/** A group-level service: like an elector's, with the partition passed to `start`. */
export interface GroupServiceDefinition<T = unknown> extends Omit<ServiceDefinition<T>, "start"> {
  start(term: Term, partition: number): T | Promise<T>;
}

/** Leader work registered on the group, applied to every partition's elector. */
interface Registration {
  readonly apply: (e: Elector, partition: number) => Disposable;
  readonly applied: Map<Elector, Disposable>;
}

/** What one read of the store says about the group. */
interface GroupView {
  readonly members: GroupMember[];
  readonly memberLeases: string[];
  readonly holders: (string | null)[];
  readonly problems: ConfigError[];
}

/**
 * P partitions shared over the live members of a group: each partition is a
 * lease with its own fencing token, owned through one elector per partition
 * this member is assigned. See docs/groups.md.
 */
export class Group {
  readonly options: ResolvedGroupOptions;
  private readonly events: TypedEmitter<GroupEvents>;
  private readonly memberLease: string;
  private member: Elector | null = null;
  private readonly electors = new Map<number, Elector>();
  /** Partitions being handed over: their old elector is resigning and stopping. */
  private readonly handing = new Map<number, Promise<void>>();
  private readonly registrations = new Set<Registration>();
  private readonly watches = new Map<string, Promise<Unwatch | null>>();
  /** Member leases whose watch failed: failures in a row, and when to try again. */
  private readonly watchRetry = new Map<string, { failures: number; at: number }>();
  private readonly reported = new Set<string>();
  private loop: Promise<void> | null = null;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private wakeController = new AbortController();
  private lastView: GroupView | null = null;
  /**
   * Member leases whose release the store pushed since they were last read: the
   * next step drops them from the last view instead of reading the whole group
   * again, so a graceful leave is acted on without waiting for a `list()`.
   */
  private readonly departed = new Set<string>();
  private lastSettled = false;

  constructor(opts: GroupOptions) {
    this.options = resolveGroupOptions(opts);
    const o = this.options;
    const hash = createHash("sha256").update(o.holderId).digest("hex").slice(0, 16);
    this.memberLease = memberLeaseName(o.name, o.partitions, o.weight, hash);
    this.events = new TypedEmitter<GroupEvents>((event, err) => {
      o.logger.error(describeListenerError(event, err), { lease: o.name });
      if (event !== "error") this.events.emit("error", toError(err));
    });
  }

  get name(): string {
    return this.options.name;
  }
  get holderId(): string {
    return this.options.holderId;
  }

  /** Lease name of partition `p`. */
  partitionLease(p: number): string {
    return partitionLeaseName(this.options.name, p);
  }

  on<K extends keyof GroupEvents>(event: K, fn: (payload: GroupEvents[K]) => unknown): Disposable {
    return this.events.on(event, fn);
  }
  off<K extends keyof GroupEvents>(event: K, fn: (payload: GroupEvents[K]) => unknown): void {
    this.events.off(event, fn);
  }

  /**
   * Joins the group: checks the store (a live member with another partition
   * count, or a lease that clashes with the group's names, rejects with a
   * `ConfigError` before anything is written), takes the member lease and
   * starts campaigning for the partitions assigned to this member. Resolves
   * once running, not when partitions are owned.
   */
  async start(): Promise<void> {
    if (this.loop) return;
    if (this.stopping) throw new LifecycleError("group", "cannot start after stop()");
    const first = this.readView(await this.options.store.list());
    const problem = first.problems[0];
    if (problem) throw problem;
    const o = this.options;
    this.member = createElector({
      store: o.store,
      name: this.memberLease,
      ttlMs: o.ttlMs,
      holderId: o.holderId,
      clock: o.clock,
      logger: o.logger,
      random: o.random,
    });
    this.member.on("elected", () => {
      // A member (re)joining reads the store: the view it had before, and the leaves pushed
      // since, may be stale. etcd replays a watch's missed history when it resumes after a
      // fault, so a member cut off with the others heard each of them leave (their member
      // leases expired meanwhile), and acted on its old view minus all of them: it took every
      // partition without a read, while they had joined again (chaos group:etcd:latency:965197463).
      this.lastView = null;
      this.lastSettled = false;
      this.departed.clear();
      this.wake();
    });
    this.member.on("error", (e) => this.events.emit("error", e));
    await this.member.start();
    this.loop = this.run();
  }

  /** Partitions this process owns now, each clock-checked like `elector.isLeader()`, ascending. */
  owned(): number[] {
    const out: number[] = [];
    for (const [p, e] of this.electors) if (e.isLeader()) out.push(p);
    for (const p of this.handing.keys()) if (this.handingElector.get(p)?.isLeader()) out.push(p);
    return out.sort((a, b) => a - b);
  }

  /** True when this process owns partition `p` now (clock-checked). */
  owns(p: number): boolean {
    return (this.electors.get(p) ?? this.handingElector.get(p))?.isLeader() ?? false;
  }

  /** The current term of partition `p` if owned (clock-checked), else null. */
  term(p: number): Term | null {
    return (this.electors.get(p) ?? this.handingElector.get(p))?.term() ?? null;
  }

  /** Partitions this member is assigned by its last view (it campaigns for these). */
  assigned(): number[] {
    return [...this.electors.keys()].sort((a, b) => a - b);
  }

  /** Live members as the store shows them now (one `list()`), this process included once it joined. */
  async members(): Promise<GroupMember[]> {
    const view = this.readView(await this.options.store.list());
    return view.members;
  }

  /**
   * Registers a service that runs for every partition this process owns:
   * `start(term, partition)` on each partition's election, `stop(reason)` when
   * that partition's term ends. It is an elector service on each partition's
   * elector (same retries, stop-before-release, health). Returns an unregister function.
   */
  service<T>(def: GroupServiceDefinition<T>): Disposable {
    return this.register((e, p) =>
      e.service<T>({ ...def, start: (term: Term) => def.start(term, p) }),
    );
  }

  /**
   * Runs `fn(term, partition)` every `ms` for every partition this process
   * owns, as an elector tick of that partition (clock-checked, with its token).
   * Returns an unregister function.
   */
  every(
    ms: number,
    fn: (term: Term, partition: number, info: TickInfo) => unknown,
    opts?: EveryOptions,
  ): Disposable {
    return this.register((e, p) => e.every(ms, (term, info) => fn(term, p, info), opts));
  }

  /**
   * Leaves the group: releases the member lease (the others see this member
   * gone) and hands every partition over at once: each partition's work is
   * stopped, then its lease released; releases that are ready together leave
   * in one `releaseMany` round trip with the member lease's, so the new owners
   * find them free. Resolves when everything is released.
   */
  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.stopping = true;
    this.wake();
    // Not waiting for a step in flight (a slow list()): once `stopping` is set it campaigns
    // for nothing more, so the handover starts at once. The member lease and every partition
    // are stopped together: each partition's release waits for its own work to stop, and the
    // releases of one turn leave as one releaseMany round trip (the shared releaser), the
    // member lease first, so the others learn this member left with its partitions free.
    const member = this.member?.stop();
    const all = [...this.electors.values()];
    this.electors.clear();
    await Promise.allSettled([member, ...all.map((e) => e.stop()), ...this.handing.values()]);
    await this.loop;
    const watches = [...this.watches.values()];
    this.watches.clear();
    await Promise.allSettled(watches.map(async (w) => (await w)?.()));
    for (const r of this.registrations) r.applied.clear();
  }

  // ------------------------------------------------------------- internals

  private readonly handingElector = new Map<number, Elector>();

  private register(apply: (e: Elector, partition: number) => Disposable): Disposable {
    const reg: Registration = { apply, applied: new Map() };
    this.registrations.add(reg);
    for (const [p, e] of this.electors) reg.applied.set(e, apply(e, p));
    return () => {
      this.registrations.delete(reg);
      for (const d of reg.applied.values()) d();
      reg.applied.clear();
    };
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.reconcile();
      } catch (e) {
        this.report("refresh", toError(e));
      }
      // While a rebalance is in flight (the last view not settled), read again soon: two members
      // whose views were read at different moments can each leave a free partition to the other.
      await this.idle(
        this.lastSettled ? this.options.refreshMs : unsettledRefreshMs(this.options.refreshMs),
      );
    }
  }

  /** One step: read the store, compute the target, campaign for what is ours, hand over the rest. */
  private async reconcile(): Promise<void> {
    const o = this.options;
    // Not a member (yet, or the member lease lapsed): change nothing, own nothing new.
    if (!this.member?.isLeader()) return;
    const view = await this.nextView();
    if (this.stopping) return;
    for (const p of view.problems) this.report(p.message, p);
    const members: AssignMember[] = view.members
      .filter((m) => m.partitions === o.partitions)
      .map((m) => ({ id: m.holder, weight: m.weight }));
    if (!members.some((m) => m.id === o.holderId)) {
      members.push({ id: o.holderId, weight: o.weight });
    }
    this.lastView = view;
    // A partition this member leads now is its own, whatever the view shows: a list is no
    // snapshot (Redis SCANs, then reads each lease) and can miss a live lease; shown free, the
    // target could give it to another member, a move no rebalance needs.
    const holders = view.holders.map((h, p) => (this.electors.get(p)?.isLeader() ? o.holderId : h));
    const target = assignPartitions(o.partitions, members, holders);
    // Settled: every partition held by its target owner. Only from such a view may a pushed
    // leave be acted on without a fresh list (a view read mid-rebalance has stale holders).
    this.lastSettled = target.every((id, p) => holders[p] === id);
    for (const [p, e] of this.electors) if (target[p] !== o.holderId) this.handOver(p, e);
    for (let p = 0; p < o.partitions; p++) {
      if (target[p] === o.holderId && !this.electors.has(p) && !this.handing.has(p)) {
        this.campaign(p);
      }
    }
    this.updateWatches(view.memberLeases);
  }

  /**
   * The view to act on: when the last view was settled, that view minus the
   * members whose release was just pushed (no store call), else a fresh
   * `list()`. The regular refresh reads the store again; leases keep
   * ownership exclusive while views differ.
   */
  private async nextView(): Promise<GroupView> {
    const last = this.lastView;
    if (last && this.lastSettled && [...this.departed].some((n) => last.memberLeases.includes(n))) {
      const gone = this.departed;
      const holders = new Set<string>();
      const members: GroupMember[] = [];
      const memberLeases: string[] = [];
      last.memberLeases.forEach((n, i) => {
        if (gone.has(n)) holders.add(last.members[i]!.holder);
        else {
          members.push(last.members[i]!);
          memberLeases.push(n);
        }
      });
      gone.clear();
      // Their partitions are being released: free in the target.
      const held = last.holders.map((h) => (h !== null && holders.has(h) ? null : h));
      return { members, memberLeases, holders: held, problems: [] };
    }
    const seen = [...this.departed];
    const view = this.readView(await this.listBounded());
    for (const n of seen) this.departed.delete(n);
    return view;
  }

  private campaign(p: number): void {
    const o = this.options;
    const e = createElector({
      store: o.store,
      name: this.partitionLease(p),
      ttlMs: o.ttlMs,
      holderId: o.holderId,
      stopTimeoutMs: o.stopTimeoutMs,
      clock: o.clock,
      logger: o.logger,
      random: o.random,
    });
    e.on("elected", (term) => this.events.emit("assigned", { partition: p, term }));
    e.on("demoted", (d) =>
      this.events.emit("revoked", { partition: p, token: d.token, reason: d.reason }),
    );
    e.on("error", (err) => this.events.emit("error", err));
    for (const r of this.registrations) r.applied.set(e, r.apply(e, p));
    this.electors.set(p, e);
    void e.start();
  }

  /** Cooperative handover: stop the partition's work, then release (resign), then stop campaigning. */
  private handOver(p: number, e: Elector): void {
    this.electors.delete(p);
    this.handingElector.set(p, e);
    const done = (async () => {
      try {
        await e.resign();
        await e.stop();
      } finally {
        for (const r of this.registrations) r.applied.delete(e);
        this.handing.delete(p);
        this.handingElector.delete(p);
        this.wake();
      }
    })();
    this.handing.set(p, done);
  }

  /** Watches the other members' leases, so a member leaving is noticed at once where the store notifies. */
  private updateWatches(names: string[]): void {
    const o = this.options;
    const { store } = o;
    if (!store.notifies || !store.watch) return;
    const want = new Set(names.filter((n) => n !== this.memberLease));
    for (const [n, w] of this.watches) {
      if (!want.has(n)) {
        this.watches.delete(n);
        this.watchRetry.delete(n);
        void w.then((u) => u?.()).catch(() => {});
      }
    }
    for (const n of this.watchRetry.keys()) if (!want.has(n)) this.watchRetry.delete(n);
    for (const n of want) {
      if (this.watches.has(n)) continue;
      const retry = this.watchRetry.get(n);
      if (retry && o.clock.now() < retry.at) continue;
      const w: Promise<Unwatch | null> = store
        .watch(n, (e) => {
          // Taken again after a release (a member that rejoined, or a release replayed late):
          // not a leave to act on without a read.
          if (e.type === "released") this.departed.add(n);
          else this.departed.delete(n);
          this.wake();
        })
        .then(
          (u) => {
            this.watchRetry.delete(n);
            return u;
          },
          (err) => {
            this.report(`watch ${n}`, toError(err));
            // Tried again on a later step, after a bounded backoff: a watch that failed once
            // (a loaded machine, a cut store member) is not given up for good, or this member
            // would learn of that member's leave only from the periodic list.
            if (this.watches.get(n) === w) this.watches.delete(n);
            const failures = (retry?.failures ?? 0) + 1;
            const delay = backoffDelay(
              failures,
              {
                initialMs: o.refreshMs,
                maxMs: Math.max(o.refreshMs, Math.floor(o.ttlMs / 2)),
                jitter: 0.2,
              },
              o.random,
            );
            this.watchRetry.set(n, { failures, at: o.clock.now() + delay });
            return null;
          },
        );
      this.watches.set(n, w);
    }
  }

  /** Parses the store's leases into members, partition holders and clashes. */
  private readView(leases: LeaseInfo[]): GroupView {
    const o = this.options;
    const members: GroupMember[] = [];
    const memberLeases: string[] = [];
    const holders: (string | null)[] = new Array(o.partitions).fill(null);
    const problems: ConfigError[] = [];
    const prefix = `${o.name}/`;
    for (const l of leases) {
      if (l.name === o.name) {
        problems.push(
          new ConfigError(
            "name",
            `group "${o.name}" clashes with a lease of the same name (held by ${l.holder}); pick another group name`,
          ),
        );
        continue;
      }
      if (!l.name.startsWith(prefix)) continue;
      const rest = l.name.slice(prefix.length);
      const tail = parseGroupLeaseTail(rest);
      if (tail?.kind === "member") {
        const { partitions, weight } = tail;
        members.push({ holder: l.holder, weight, partitions });
        memberLeases.push(l.name);
        if (partitions !== o.partitions && l.holder !== o.holderId) {
          problems.push(
            new ConfigError(
              "partitions",
              `group "${o.name}" has ${partitions} partitions (member ${l.holder}); this member was started with ${o.partitions}`,
            ),
          );
        }
        continue;
      }
      if (tail?.kind === "partition") {
        const p = tail.partition;
        if (p < o.partitions) holders[p] = l.holder;
        else
          problems.push(
            new ConfigError(
              "partitions",
              `group "${o.name}" has a live partition ${p}, so it has more than the ${o.partitions} partitions this member was started with`,
            ),
          );
        continue;
      }
      problems.push(
        new ConfigError(
          "name",
          `group "${o.name}" clashes with lease "${l.name}", which is not one of the group's own leases; pick another group name`,
        ),
      );
    }
    return { members, memberLeases, holders, problems };
  }

  /** `store.list()` bounded by min(ttl, 10 s): a hung store cannot hang the loop (or `stop()`). */
  private async listBounded(): Promise<LeaseInfo[]> {
    const o = this.options;
    const ms = Math.min(o.ttlMs, 10_000);
    const ac = new AbortController();
    const timer = o.clock.sleep(ms, ac.signal).then(
      () => {
        throw new StoreError(`tenure group: list timed out after ${ms} ms`, {
          transient: true,
          kind: "timeout",
        });
      },
      () => new Promise<never>(() => {}),
    );
    try {
      return await Promise.race([o.store.list(), timer]);
    } finally {
      ac.abort();
    }
  }

  /** Emits an error and logs it once per distinct message. */
  private report(key: string, err: Error): void {
    if (!this.reported.has(key)) {
      this.reported.add(key);
      this.options.logger.error(err.message, { lease: this.options.name, err });
    }
    this.events.emit("error", err);
  }

  private async idle(ms: number): Promise<void> {
    const signal = this.wakeController.signal;
    if (!signal.aborted) {
      try {
        await this.options.clock.sleep(ms, signal);
      } catch {
        // woken
      }
    }
    if (this.wakeController.signal.aborted) this.wakeController = new AbortController();
  }

  private wake(): void {
    this.wakeController.abort();
  }

  /** The last view read from the store (for status output and tests). */
  view(): Readonly<GroupView> | null {
    return this.lastView;
  }
}

/** Creates a group member. Validates options (throws ConfigError). Call `start()` to join. */
export function createGroup(opts: GroupOptions): Group {
  return new Group(opts);
}
