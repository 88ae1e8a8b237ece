/**
 * The etcd v3 lease store. One etcd key per lease, attached to an etcd lease
 * (TTL in whole seconds); the fencing token is the key's create revision.
 * See docs/stores/etcd.md for the guarantees and the key layout.
 */
import type { Etcd3, ICompare, IKeyValue, IRequestOp, ITxnResponse, Watcher } from "etcd3";
import { raceDeadline, TIMED_OUT } from "../../async.js";
import { systemClock } from "../../clock.js";
import { ConfigError, isConfigError, StoreError } from "../../errors.js";
import { type Logger, noopLogger } from "../../logger.js";
import { reportInvalid } from "../../store/invalid.js";
import type {
  AcquireItem,
  AcquireResult,
  FencedPutResult,
  FencedValue,
  LeaseEvent,
  LeaseInfo,
  LeaseRef,
  LeaseStore,
  ListOptions,
  RenewItem,
  RenewResult,
  Unwatch,
} from "../../store/types.js";
import {
  roundsByName,
  validateAcquire,
  validateFencedGet,
  validateFencedPut,
  validateLeaseName,
  validateLeaseRef,
  validateReleaseItems,
  validateRenew,
} from "../../store/validate.js";
import { closedError, schemaError } from "../common/errors.js";
import { WatcherSet } from "../common/watchers.js";
import { acquireMany, ITEMS_PER_TXN } from "./acquire-many.js";
import { toEtcdStoreError } from "./classify.js";
import { HeldTerms, overdue } from "./held.js";
import { idempotent, resendable } from "./members.js";
import { type CallOptions, SessionPool } from "./pool.js";
import { Reads } from "./reads.js";
import { type EtcdRenewManyContext, renewMany } from "./renew-many.js";
import type { SessionLease } from "./session.js";
import { monotonicMs } from "./session.js";

/** Default key prefix: lease keys look like `tenure/lease/<name>`. */
export const DEFAULT_ETCD_PREFIX = "tenure/";
/** Default deadline of one store call (all of its round trips together). */
export const DEFAULT_ETCD_CALL_TIMEOUT_MS = 3000;

/** Key prefixes: empty, or up to 128 characters of `A–Z a–z 0–9 . _ : / -`. */
const PREFIX_PATTERN = /^[A-Za-z0-9._:/-]{0,128}$/;

/** The part of an `Etcd3` client the store uses: the raw KV and Lease services, watches, close. */
export type EtcdClientLike = Pick<Etcd3, "kv" | "leaseClient" | "watch" | "close">;

/** Options of {@link EtcdStore}. */
export interface EtcdStoreOptions {
  /**
   * Prefix of every key the store writes: `<prefix>lease/<name>` (the lease),
   * `<prefix>data/<name>!<key>` and `<prefix>fence/<name>!<key>` (fenced
   * values and their tokens). Up to 128 characters of `A–Z a–z 0–9 . _ : / -`.
   * Default `"tenure/"`.
   */
  prefix?: string;
  /**
   * Deadline of one store call, all of its round trips together (gRPC
   * deadline), so a partitioned or stopped member cannot hang it. Default 3000 ms.
   */
  callTimeoutMs?: number;
  /** Where the store logs failed background lease revocations. Default: silent. */
  logger?: Logger;
  /**
   * Close the client in {@link EtcdStore.close}. Default false (a client you
   * passed in stays yours); {@link openEtcdStore} sets it.
   */
  ownsClient?: boolean;
  /** Strings scrubbed from error messages (the password of the URL). Default none. */
  secrets?: readonly string[];
}

const enc = (s: string) => Buffer.from(s, "utf8");

/** The key just after every key starting with `prefix` (etcd `range_end` of a prefix range). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** etcd TTLs are whole seconds: round up, at least 1, so the server lease outlives the client's deadline. */
export function ttlSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000));
}

/**
 * A {@link LeaseStore} on etcd v3 (the `etcd3` client). Construct it from an
 * existing `Etcd3` client (the root client, not a namespace: use `prefix`),
 * or open one by URL with {@link openEtcdStore}.
 *
 * Every lease key it writes with a TTL of `s` seconds is attached to one
 * shared etcd lease of `s` seconds (a session lease, as etcd's
 * `concurrency.Session`): renewing many terms costs one keep-alive per round
 * trip, and a crashed process's keys all expire with its session. A term that
 * this process stops renewing without releasing it (an elector that gave up
 * after a failed renew, a release that failed) is ended by the store itself
 * one ttl after its last acquire or renew began, as a per-key lease would.
 */
export class EtcdStore implements LeaseStore {
  readonly kind = "etcd";
  readonly notifies = true;
  readonly prefix: string;
  private readonly client: EtcdClientLike;
  private readonly callTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly ownsClient: boolean;
  private readonly secrets: readonly string[];
  /** The shared session leases, one per TTL. */
  private readonly sessions: SessionPool;
  /** Terms this store started, and the sweep that ends them by ttl. */
  private readonly held: HeldTerms;
  private readonly reads: Reads;
  /** Callbacks of the watched lease names, all fed by {@link prefixWatch}. */
  private readonly leaseWatchers: WatcherSet;
  /**
   * ONE etcd watch over every lease key of this store, while any lease is
   * watched; `ready` settles once etcd confirmed it. etcd3 sets its watches up
   * one at a time (one round trip each, and again after every reconnect), so a
   * watch per lease kept a process of many terms (a group member, 10 000
   * electors) setting watches up for seconds, and releases meanwhile reached
   * nobody. The cost: every change of any lease under the prefix (an acquire, a
   * release, a key moved to another TTL; not a renewal) reaches this process.
   */
  private prefixWatch: { w: Watcher; ready: Promise<void> } | null = null;
  private closed = false;

  constructor(client: EtcdClientLike, opts: EtcdStoreOptions = {}) {
    const prefix = opts.prefix ?? DEFAULT_ETCD_PREFIX;
    if (typeof prefix !== "string" || !PREFIX_PATTERN.test(prefix)) {
      throw new ConfigError(
        "prefix",
        `must be up to 128 characters of A–Z a–z 0–9 . _ : / - (got ${JSON.stringify(prefix)})`,
      );
    }
    const t = opts.callTimeoutMs ?? DEFAULT_ETCD_CALL_TIMEOUT_MS;
    if (!Number.isInteger(t) || t < 1 || t > 600_000) {
      throw new ConfigError("callTimeoutMs", `must be an integer from 1 to 600000 (got ${t})`);
    }
    this.client = client;
    this.prefix = prefix;
    this.callTimeoutMs = t;
    this.logger = opts.logger;
    this.ownsClient = opts.ownsClient ?? false;
    this.secrets = opts.secrets ?? [];
    this.leaseWatchers = new WatcherSet(opts.logger ?? noopLogger);
    const deadline = () => this.deadline();
    this.sessions = new SessionPool(client, deadline);
    this.reads = new Reads(client, deadline);
    this.held = new HeldTerms(
      (name, h) => {
        const key = enc(this.leaseKey(name));
        // Guarded on the term's create revision: a second copy can only find it gone.
        return resendable(() =>
          this.txn(
            [
              { key, target: "Create", result: "Equal", create_revision: String(h.token) },
              { key, target: "Value", result: "Equal", value: enc(h.holder) },
            ],
            [{ request_delete_range: { key } }],
            [],
            this.deadline(),
          ),
        );
      },
      this.logger,
      (e) => toEtcdStoreError("end term", e, this.secrets).message,
    );
  }

  // ── keys ──────────────────────────────────────────────────────────────────
  /** The etcd key of lease `name`. */
  leaseKey(name: string): string {
    return `${this.prefix}lease/${name}`;
  }
  private dataKey(name: string, key: string): Buffer {
    return enc(`${this.prefix}data/${name}!${key}`);
  }
  private fenceKey(name: string, key: string): Buffer {
    return enc(`${this.prefix}fence/${name}!${key}`);
  }

  // ── plumbing ──────────────────────────────────────────────────────────────
  private check(op: string): void {
    if (this.closed) throw closedError("etcd", op);
  }

  /** One deadline for a whole store call. */
  private deadline(): CallOptions {
    return { deadline: Date.now() + this.callTimeoutMs };
  }

  private async run<T>(op: string, fn: (o: CallOptions) => Promise<T>): Promise<T> {
    this.check(op);
    try {
      return await fn(this.deadline());
    } catch (e) {
      throw toEtcdStoreError(op, e, this.secrets);
    }
  }

  private schemaError(op: string, what: string): StoreError {
    return schemaError("etcd", op, what, { code: "TENURE_SCHEMA" });
  }

  private async txn(
    compare: ICompare[],
    success: IRequestOp[],
    failure: IRequestOp[],
    o: CallOptions,
  ): Promise<ITxnResponse> {
    return this.client.kv.txn({ compare, success, failure }, o);
  }

  private async info(
    op: string,
    name: string,
    kv: IKeyValue,
    o: CallOptions,
    ttlCache?: Map<string, Promise<number | null>>,
    recent = false,
  ): Promise<LeaseInfo> {
    if (!kv.lease || kv.lease === "0") {
      throw this.schemaError(
        op,
        `key ${this.leaseKey(name)} has no etcd lease (not written by Tenure)`,
      );
    }
    // The key was read in this call, so its holder is known even when its etcd
    // lease is already gone (expired just now, the key not yet deleted) or a
    // member that just restarted does not know it yet: report the holder with
    // no time left, so a follower knows the leader and looks again soon.
    let remaining = ttlCache?.get(kv.lease);
    if (!remaining) {
      remaining = recent
        ? this.reads.remainingMsRecent(kv.lease, o)
        : this.reads.remainingMs(kv.lease, o);
      ttlCache?.set(kv.lease, remaining);
    }
    let ms = (await remaining) ?? 0;
    const holder = kv.value.toString("utf8");
    const token = BigInt(kv.create_revision);
    // A term of this store's own ends by its ttl even while its session lives on.
    const h = this.held.mine({ name, holder, token });
    if (h) {
      ms = Math.max(0, Math.min(ms, Math.floor(h.touchedAt + h.ttlMs - monotonicMs())));
    }
    return { name, holder, token, expiresInMs: ms };
  }

  // ── LeaseStore ───────────────────────────────────────────────────────────
  /**
   * Puts the key if it is absent (a term of this store past its ttl is ended
   * first). A key the caller's holder holds live is not taken over: that term
   * goes on (renewed, its token answered), so an acquire answered late (its
   * caller gave up, retried and won) never ends the term its retry started.
   */
  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    validateAcquire(name, holder, ttlMs);
    await this.held.settle(name);
    // Counted from after the settle: a term is never recorded already past its ttl.
    return this.acquireNow(name, holder, ttlMs, monotonicMs());
  }

  private async acquireNow(
    name: string,
    holder: string,
    ttlMs: number,
    since: number,
  ): Promise<AcquireResult> {
    const key = enc(this.leaseKey(name));
    const r = await this.run("acquire", async (o): Promise<AcquireResult | { own: LeaseRef }> => {
      // A session lease can expire between our use of it and its keep-alive
      // (a stall): then the key went with it. Try once more on a new session.
      for (let attempt = 1; ; attempt++) {
        const session = await this.sessions.session(ttlSeconds(ttlMs), o);
        // The keep-alive runs beside the transaction: the session (and so the
        // new key) then lives at least ttl from `since`.
        const alive = session.refresh(since);
        alive.catch(() => {});
        let r: ITxnResponse;
        try {
          r = await this.putIfAbsent(key, holder, session.id, o);
        } catch (e) {
          if (attempt < 2 && toEtcdStoreError("acquire", e).code === "LEASE_NOT_FOUND") {
            session.lost = true;
            continue;
          }
          throw e;
        }
        if (!r.succeeded) {
          const cur = r.responses[0]?.response_range.kvs[0];
          if (cur && cur.value.toString("utf8") === holder) {
            return { own: { name, holder, token: BigInt(cur.create_revision) } };
          }
          return {
            acquired: false as const,
            current: cur ? await this.info("acquire", name, cur, o, undefined, true) : null,
          };
        }
        // The header revision of a write transaction is the revision of its
        // put: the new key's create revision.
        const lease = { name, holder, token: BigInt(r.header.revision) };
        if ((await alive) > 0) {
          this.held.hold(lease, ttlMs, since);
          return { acquired: true as const, lease };
        }
        // The session expired under the new key: the key is gone with it.
        session.lost = true;
        if (attempt >= 2) return { acquired: false as const, current: null };
      }
    });
    if (!("own" in r)) return r;
    // The holder's own live term goes on: renewed (moved onto this store's session if
    // another store of the same holder put it), its token answered.
    const renewed = await this.renew(r.own, ttlMs);
    return renewed.renewed
      ? { acquired: true, lease: r.own }
      : { acquired: false, current: renewed.current };
  }

  /** Puts the key on lease `leaseId` if it is absent; the failure branch reads the key. */
  private putIfAbsent(
    key: Buffer,
    holder: string,
    leaseId: string,
    o: CallOptions,
  ): Promise<ITxnResponse> {
    return this.txn(
      [{ key, target: "Create", result: "Equal", create_revision: 0 }],
      [{ request_put: { key, value: enc(holder), lease: leaseId } }],
      [{ request_range: { key } }],
      o,
    );
  }

  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateRenew(lease, ttlMs);
    const since = monotonicMs();
    const key = enc(this.leaseKey(lease.name));
    const done = this.beginRenewal(lease, since, "renew");
    if (done === "over") return { renewed: false, current: null };
    try {
      return await this.run("renew", async (o) => {
        // One round trip: with a live session of this TTL, its keep-alive
        // goes out beside the read (see liveSession for why that is safe).
        const ttlSec = ttlSeconds(ttlMs);
        const live = this.sessions.live(ttlSec);
        const early = live?.refresh(since);
        early?.catch(() => {});
        const kv = await this.reads.batched(key);
        if (!kv) {
          this.held.forget(lease.name, lease.token);
          return { renewed: false as const, current: null };
        }
        const holder = kv.value.toString("utf8");
        if (BigInt(kv.create_revision) !== lease.token || holder !== lease.holder) {
          this.held.forget(lease.name, lease.token);
          return { renewed: false as const, current: await this.info("renew", lease.name, kv, o) };
        }
        if (!kv.lease || kv.lease === "0") {
          throw this.schemaError("renew", `key ${this.leaseKey(lease.name)} has no etcd lease`);
        }
        let session = live ?? (await this.sessions.session(ttlSec, o));
        if (kv.lease !== session.id) {
          const moved = await this.moveToSession(lease, key, kv.lease, session, ttlSec, o);
          if (!moved.ok) return { renewed: false as const, current: moved.current };
          session = moved.session;
        }
        const ttlLeft = session === live && early ? await early : await session.refresh(since);
        if (ttlLeft <= 0) {
          // The session expired (a stall, a partition): the term is over.
          this.held.forget(lease.name, lease.token);
          const now = await this.reads.one(key, o);
          return {
            renewed: false as const,
            current: now ? await this.info("renew", lease.name, now, o) : null,
          };
        }
        this.held.hold(lease, ttlMs, since);
        return { renewed: true as const };
      });
    } finally {
      done();
    }
  }

  /**
   * Moves a renewed term's key onto `session` (the live session of its TTL)
   * from the etcd lease it is on (`from`: another TTL, an expired session, or
   * a key from another store of the same holder), guarded so only this term's
   * key moves; the create revision, the token, is kept. A session of that TTL
   * left idle past its TTL is gone in etcd: a new one is granted, once.
   */
  private async moveToSession(
    lease: LeaseRef,
    key: Buffer,
    from: string,
    session: SessionLease,
    ttlSec: number,
    o: CallOptions,
  ): Promise<{ ok: true; session: SessionLease } | { ok: false; current: LeaseInfo | null }> {
    const move = (id: string) =>
      this.txn(
        [
          { key, target: "Create", result: "Equal", create_revision: String(lease.token) },
          { key, target: "Value", result: "Equal", value: enc(lease.holder) },
          { key, target: "Lease", result: "Equal", lease: from },
        ],
        [{ request_put: { key, value: enc(lease.holder), lease: id } }],
        [{ request_range: { key } }],
        o,
      );
    let moved: ITxnResponse;
    try {
      moved = await move(session.id);
    } catch (e) {
      // A session of that TTL left idle past its TTL is gone in etcd: grant a new one, once.
      if (toEtcdStoreError("renew", e).code !== "LEASE_NOT_FOUND") throw e;
      session.lost = true;
      session = await this.sessions.session(ttlSec, o);
      moved = await move(session.id);
    }
    if (!moved.succeeded) {
      const cur = moved.responses[0]?.response_range.kvs[0];
      const same =
        cur !== undefined &&
        BigInt(cur.create_revision) === lease.token &&
        cur.value.toString("utf8") === lease.holder &&
        cur.lease === session.id;
      // `same`: a concurrent renew of this term moved it first.
      if (!same) {
        this.held.forget(lease.name, lease.token);
        return { ok: false, current: cur ? await this.info("renew", lease.name, cur, o) : null };
      }
    }
    return { ok: true, session };
  }

  /** One keep-alive per session and one read transaction per batch: see renew-many.ts. */
  /**
   * A renewal of `lease` that began at `since` starts: "over" (the store ends
   * the term) when its term here is past its ttl, else the function to call
   * when the renewal is done (no term of that name is swept meanwhile).
   */
  private beginRenewal(lease: LeaseRef, since: number, op: string): "over" | (() => void) {
    const h = this.held.mine(lease);
    if (h && overdue(h, since)) {
      // Past its ttl here: the term is over even if its session still lives.
      this.check(op);
      void this.held.end(lease.name, h);
      return "over";
    }
    return this.held.begin(lease.name);
  }

  renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return renewMany(this.batchContext(), items);
  }

  /** Every item in one transaction of nested ones (≤ 100 items each): see acquire-many.ts. */
  acquireMany(items: readonly AcquireItem[]): Promise<AcquireResult[]> {
    return acquireMany(
      {
        run: (fn) => this.run("acquireMany", fn),
        key: (name) => enc(this.leaseKey(name)),
        settle: (name) => this.held.settle(name),
        session: (ttlSec, o) => this.sessions.session(ttlSec, o),
        ttlSeconds,
        txn: (ops, o) => this.txn([], ops, [], o),
        leaseGone: (e) => toEtcdStoreError("acquireMany", e).code === "LEASE_NOT_FOUND",
        info: (name, kv, o, cache) => this.info("acquireMany", name, kv, o, cache, true),
        hold: (lease, ttlMs, since) => this.held.hold(lease, ttlMs, since),
        begin: (name) => this.held.begin(name),
        recorded: (lease) => {
          const h = this.held.mine(lease);
          return h !== undefined && h.ending === undefined;
        },
        acquire: (name, holder, ttlMs) => this.acquire(name, holder, ttlMs),
      },
      items,
    );
  }

  private batchContext(): EtcdRenewManyContext {
    return {
      run: (fn) => this.run("renewMany", fn),
      key: (name) => this.leaseKey(name),
      begin: (lease, since) => this.beginRenewal(lease, since, "renewMany"),
      liveSession: (ttlSec) => this.sessions.live(ttlSec),
      ttlSeconds,
      read: async (ops, o) =>
        (await idempotent(() => this.txn([], ops, [], o))).responses.map((r) => r.response_range),
      info: (name, kv, o) => this.info("renewMany", name, kv, o),
      forget: (name, token) => this.held.forget(name, token),
      hold: (lease, ttlMs, since) => this.held.hold(lease, ttlMs, since),
      renew: (lease, ttlMs) => this.renew(lease, ttlMs),
    };
  }

  async release(lease: LeaseRef): Promise<boolean> {
    validateLeaseRef(lease);
    if (lease.token === 0n) return false;
    const key = enc(this.leaseKey(lease.name));
    return this.run("release", async (o) => {
      // A failed call leaves the term to the sweeper: it ends one ttl after
      // its last renewal began.
      const r = await this.txn(
        [
          { key, target: "Create", result: "Equal", create_revision: String(lease.token) },
          { key, target: "Value", result: "Equal", value: enc(lease.holder) },
        ],
        [{ request_delete_range: { key } }],
        [],
        o,
      );
      this.held.forget(lease.name, lease.token);
      return r.succeeded;
    });
  }

  /**
   * Every item in transactions of nested transactions, one per item (each the
   * compare-and-delete `release` sends), at most {@link ITEMS_PER_TXN} items
   * per transaction (etcd's `--max-txn-ops`), all in flight at once. One
   * transaction cannot touch one key twice, so a batch naming one lease twice
   * goes one occurrence after the other (the same term twice: the second
   * finds it gone and answers false). Each delete notifies the lease's watchers.
   */
  async releaseMany(leases: readonly LeaseRef[]): Promise<boolean[]> {
    validateReleaseItems(leases);
    const out: boolean[] = leases.map(() => false);
    if (leases.length === 0) return out;
    return this.run("releaseMany", async (o) => {
      for (const round of roundsByName(leases)) {
        const live = round.filter((i) => leases[i]!.token !== 0n);
        const chunks: number[][] = [];
        for (let k = 0; k < live.length; k += ITEMS_PER_TXN)
          chunks.push(live.slice(k, k + ITEMS_PER_TXN));
        await Promise.all(
          chunks.map(async (idx) => {
            const ops: IRequestOp[] = idx.map((i) => {
              const l = leases[i]!;
              const key = enc(this.leaseKey(l.name));
              return {
                request_txn: {
                  compare: [
                    { key, target: "Create", result: "Equal", create_revision: String(l.token) },
                    { key, target: "Value", result: "Equal", value: enc(l.holder) },
                  ],
                  success: [{ request_delete_range: { key } }],
                  failure: [],
                },
              };
            });
            const r = await this.txn([], ops, [], o);
            idx.forEach((i, j) => {
              out[i] = r.responses[j]?.response_txn?.succeeded === true;
            });
          }),
        );
        for (const i of round) this.held.forget(leases[i]!.name, leases[i]!.token);
      }
      return out;
    });
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    const key = enc(this.leaseKey(name));
    return this.run("read", async (o) => {
      await this.held.settle(name);
      const kv = await this.reads.one(key, o);
      return kv ? this.info("read", name, kv, o) : null;
    });
  }

  async list(opts: ListOptions = {}): Promise<LeaseInfo[]> {
    const p = enc(`${this.prefix}lease/`);
    return this.run("list", async (o) => {
      const r = await this.client.kv.range({ key: p, range_end: prefixEnd(p) }, o);
      // Many keys share one session lease: ask for each lease's TTL once.
      const ttls = new Map<string, Promise<number | null>>();
      const infos = await Promise.all(
        r.kvs.map(async (kv) => {
          const name = kv.key.subarray(p.length).toString("utf8");
          try {
            validateLeaseName(name);
            return await this.info("list", name, kv, o, ttls);
          } catch (e) {
            // One bad key is reported, not a reason to hide every other lease.
            const garbage = isConfigError(e) || (e instanceof StoreError && e.kind === "schema");
            if (!garbage) throw e;
            reportInvalid(opts, this.logger, name, e);
            return null;
          }
        }),
      );
      return infos.filter((i): i is LeaseInfo => {
        if (i === null) return false;
        // A term of this store's own past its ttl is being ended: not live.
        const h = this.held.get(i.name);
        return !(h && h.token === i.token && overdue(h, monotonicMs()));
      });
    });
  }

  /**
   * Deletes the key whoever holds it. The holder's session lease is not
   * revoked: it carries that process's other terms.
   */
  async forceRelease(name: string): Promise<boolean> {
    validateLeaseName(name);
    const key = enc(this.leaseKey(name));
    return this.run("forceRelease", async (o) => {
      const r = await this.client.kv.deleteRange({ key }, o);
      this.held.forget(name);
      return Number(r.deleted) > 0;
    });
  }

  async watch(name: string, onChange: (event: LeaseEvent) => void): Promise<Unwatch> {
    validateLeaseName(name);
    this.check("watch");
    const pw = this.prefixWatch ?? this.openPrefixWatch();
    try {
      // Like etcd3's create(), but bounded: an unreachable cluster fails the
      // call within the deadline instead of waiting for the stream forever.
      if ((await raceDeadline(systemClock, pw.ready, this.callTimeoutMs)) === TIMED_OUT) {
        throw new StoreError(
          `tenure etcd: watch failed: not connected within ${this.callTimeoutMs} ms`,
          { transient: true, kind: "timeout", code: "DEADLINE_EXCEEDED" },
        );
      }
    } catch (e) {
      // A prefix watch that never came up is dropped, so the next watch() sets up a new one.
      if (this.prefixWatch === pw && this.leaseWatchers.size === 0) this.closePrefixWatch();
      throw toEtcdStoreError("watch", e, this.secrets);
    }
    this.check("watch");
    if (this.prefixWatch !== pw) {
      // Dropped while this call waited (every other watcher left): set up again.
      return this.watch(name, onChange);
    }
    this.leaseWatchers.add(name, onChange);
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      this.leaseWatchers.delete(name, onChange);
      if (this.leaseWatchers.size === 0) this.closePrefixWatch();
    };
  }

  /** Starts the one watch over every lease key (see {@link prefixWatch}). */
  private openPrefixWatch(): { w: Watcher; ready: Promise<void> } {
    const head = `${this.prefix}lease/`;
    const nameOf = (kv: IKeyValue) => kv.key.toString("utf8").slice(head.length);
    const w = this.client.watch().prefix(head).watcher();
    const ready = new Promise<void>((resolve, reject) => {
      w.once("connected", () => resolve());
      w.once("error", reject);
    });
    ready.catch(() => {}); // an error after the deadline is the dropped watch's
    // A put names its term: the key's create revision is the token.
    w.on("put", (kv) => {
      const name = nameOf(kv);
      this.leaseWatchers.emit(name, {
        name,
        type: kv.version === "1" ? "acquired" : "changed",
        token: BigInt(kv.create_revision),
      });
    });
    w.on("delete", (kv) => {
      const name = nameOf(kv);
      this.leaseWatchers.emit(name, { name, type: "released" });
    });
    // The watch manager reconnects by itself (and replays what was missed); errors are logged.
    w.on("error", (e) =>
      this.logger?.debug("etcd watch error; reconnecting", {
        err: toEtcdStoreError("watch", e, this.secrets).message,
      }),
    );
    const pw = { w, ready };
    this.prefixWatch = pw;
    return pw;
  }

  private closePrefixWatch(): void {
    const pw = this.prefixWatch;
    if (!pw) return;
    this.prefixWatch = null;
    detachWatcher(pw.w);
  }

  async putFenced(
    lease: Pick<LeaseRef, "name" | "holder" | "token">,
    key: string,
    value: string,
    opts: { expect?: string | null } = {},
  ): Promise<FencedPutResult> {
    validateFencedPut(lease, key, value, opts);
    if (lease.token === 0n) return { ok: false, reason: "fenced" };
    const lk = enc(this.leaseKey(lease.name));
    const dk = this.dataKey(lease.name, key);
    const fk = this.fenceKey(lease.name, key);
    return this.run("putFenced", async (o) => {
      const compare: ICompare[] = [
        { key: lk, target: "Create", result: "Equal", create_revision: String(lease.token) },
      ];
      if (opts.expect === null) {
        compare.push({ key: dk, target: "Create", result: "Equal", create_revision: 0 });
      } else if (opts.expect !== undefined) {
        compare.push({ key: dk, target: "Value", result: "Equal", value: enc(opts.expect) });
      }
      const r = await this.txn(
        compare,
        [
          { request_put: { key: dk, value: enc(value) } },
          { request_put: { key: fk, value: enc(String(lease.token)) } },
        ],
        [{ request_range: { key: lk, keys_only: true } }],
        o,
      );
      if (r.succeeded) return { ok: true as const };
      const cur = r.responses[0]?.response_range.kvs[0];
      const held = cur !== undefined && BigInt(cur.create_revision) === lease.token;
      return { ok: false as const, reason: held ? ("conflict" as const) : ("fenced" as const) };
    });
  }

  async getFenced(name: string, key: string): Promise<FencedValue | null> {
    validateFencedGet(name, key);
    const dk = this.dataKey(name, key);
    const fk = this.fenceKey(name, key);
    return this.run("getFenced", async (o) => {
      // One transaction: the value and its token from the same revision.
      const r = await this.txn(
        [],
        [{ request_range: { key: dk } }, { request_range: { key: fk } }],
        [],
        o,
      );
      const v = r.responses[0]?.response_range.kvs[0];
      if (!v) return null;
      const t = r.responses[1]?.response_range.kvs[0]?.value.toString("utf8");
      if (!t || !/^\d+$/.test(t)) {
        throw this.schemaError("getFenced", `no valid token stored for ${dk.toString("utf8")}`);
      }
      return { value: v.value.toString("utf8"), token: BigInt(t) };
    });
  }

  /** `await using store = …`: closes the store at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sessions.close();
    this.leaseWatchers.clear();
    this.closePrefixWatch();
    await this.held.close();
    if (this.ownsClient) this.client.close();
  }
}

/**
 * Stops a watcher's callbacks at once and asks its member to cancel it
 * without waiting for the answer: etcd3's cancel resolves only when the
 * member acknowledges (or the stream breaks), so a cut-off member that held
 * the stream kept a stopping elector, or close(), waiting for seconds. The
 * acknowledgement only frees the member's watch; closing the client ends the
 * stream anyway.
 */
function detachWatcher(w: Watcher): void {
  w.removeAllListeners("put");
  w.removeAllListeners("delete");
  w.cancel().catch(() => {});
}
