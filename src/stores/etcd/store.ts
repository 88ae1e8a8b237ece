/**
 * The etcd v3 lease store. One etcd key per lease, attached to an etcd lease
 * (TTL in whole seconds); the fencing token is the key's create revision.
 * See docs/stores/etcd.md for the guarantees and the key layout.
 */
import type { Etcd3, ICompare, IKeyValue, IRequestOp, ITxnResponse, Watcher } from "etcd3";
import { ConfigError, isConfigError, StoreError } from "../../errors.js";
import type { Logger } from "../../logger.js";
import { reportInvalid } from "../../store/invalid.js";
import type {
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
  validateFencedKey,
  validateFencedPut,
  validateHolder,
  validateLeaseName,
  validateLeaseRef,
  validateTtl,
} from "../../store/validate.js";
import { toEtcdStoreError } from "./classify.js";
import { KeepAliveChannel, type KeepAliveStream } from "./keepalive.js";
import { type EtcdRenewManyContext, renewMany } from "./renew-many.js";
import { monotonicMs, SessionLease, staleAfterMs } from "./session.js";

/** gRPC call options the store sets: an absolute deadline (ms since the epoch). */
type CallOptions = { deadline: number };

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
 */
/** Most range operations in one batched read transaction (etcd's default `--max-txn-ops` is 128). */
const READ_BATCH = 100;
/** How long an etcd lease's remaining TTL, once fetched, may be reused (aged) on acquire's failure path. */
const TTL_REUSE_MS = 1000;
/** Most remembered TTL answers (cleared when full; one entry per holder session seen). */
const TTL_SEEN_MAX = 1000;
/** How often the store looks for terms of its own that ended without a release. */
const SWEEP_INTERVAL_MS = 100;

/** A term this store started and has not seen end: what the sweeper needs to end it by ttl. */
interface Held {
  readonly holder: string;
  readonly token: bigint;
  ttlMs: number;
  /** Monotonic ms at which the newest successful acquire/renew of the term began. */
  touchedAt: number;
  /** Renewals of the term in flight: the sweeper leaves the term alone meanwhile. */
  pending: number;
  /** Set once the store decided the term is over: its key is being deleted. */
  ending?: Promise<void>;
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
  /** Session leases by TTL in seconds, and grants of them in flight. */
  private readonly sessions = new Map<number, SessionLease>();
  private readonly granting = new Map<number, { sentAt: number; p: Promise<SessionLease> }>();
  /** Terms this store started, by lease name. */
  private readonly held = new Map<string, Held>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readQueue: {
    key: Buffer;
    resolve: (kv: IKeyValue | null) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private readScheduled = false;
  private readonly background = new Set<Promise<void>>();
  /** Per lease name: the number of the newest acquire this store started. */
  private readonly newestAcquire = new Map<string, number>();
  private acquireSeq = 0;
  private readonly watchers = new Set<Watcher>();
  /** Recent TTL answers by etcd lease ID: monotonic send time and remaining ms (null: gone). */
  private readonly ttlSeen = new Map<string, { sentAt: number; ms: number | null }>();
  /** The one keep-alive stream of every session lease (opened on first use, without a deadline). */
  private readonly keepAlives = new KeepAliveChannel(
    async () => (await this.client.leaseClient.leaseKeepAlive()) as unknown as KeepAliveStream,
  );
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
  private check(): void {
    if (this.closed) {
      throw new StoreError("tenure etcd: store is closed", { transient: false, kind: "closed" });
    }
  }

  /** One deadline for a whole store call. */
  private deadline(): CallOptions {
    return { deadline: Date.now() + this.callTimeoutMs };
  }

  private async run<T>(op: string, fn: (o: CallOptions) => Promise<T>): Promise<T> {
    this.check();
    try {
      return await fn(this.deadline());
    } catch (e) {
      throw toEtcdStoreError(op, e, this.secrets);
    }
  }

  private schemaError(op: string, what: string): StoreError {
    return new StoreError(`tenure etcd: ${op}: ${what}`, {
      transient: false,
      kind: "schema",
      code: "TENURE_SCHEMA",
    });
  }

  private async txn(
    compare: ICompare[],
    success: IRequestOp[],
    failure: IRequestOp[],
    o: CallOptions,
  ): Promise<ITxnResponse> {
    return this.client.kv.txn({ compare, success, failure }, o);
  }

  private async getKv(key: Buffer, o: CallOptions): Promise<IKeyValue | null> {
    const r = await this.client.kv.range({ key }, o);
    return r.kvs[0] ?? null;
  }

  /**
   * Reads one key. Reads requested in the same turn of the event loop go out
   * together as one read-only transaction (one revision, one round trip), so
   * the renewals of many terms cost a few calls, not one each.
   */
  private readKey(key: Buffer): Promise<IKeyValue | null> {
    return new Promise((resolve, reject) => {
      this.readQueue.push({ key, resolve, reject });
      if (!this.readScheduled) {
        this.readScheduled = true;
        setImmediate(() => this.flushReads());
      }
    });
  }

  private flushReads(): void {
    this.readScheduled = false;
    const queue = this.readQueue;
    this.readQueue = [];
    for (let i = 0; i < queue.length; i += READ_BATCH) {
      const chunk = queue.slice(i, i + READ_BATCH);
      const o = this.deadline();
      const done =
        chunk.length === 1
          ? this.getKv(chunk[0]!.key, o).then((kv) => [kv])
          : this.txn(
              [],
              chunk.map((c) => ({ request_range: { key: c.key } })),
              [],
              o,
            ).then((r) => chunk.map((_, j) => r.responses[j]?.response_range.kvs[0] ?? null));
      done.then(
        (kvs) => {
          for (const [j, c] of chunk.entries()) c.resolve(kvs[j] ?? null);
        },
        (e: unknown) => {
          for (const c of chunk) c.reject(e);
        },
      );
    }
  }

  /** Remaining TTL of an etcd lease in ms (whole seconds, rounded down by etcd); null once it is gone. */
  private async remainingMs(leaseId: string, o: CallOptions): Promise<number | null> {
    const r = await this.client.leaseClient.leaseTimeToLive({ ID: leaseId }, o);
    const ttl = Number(r.TTL);
    return ttl < 0 ? null : ttl * 1000;
  }

  /**
   * Like {@link remainingMs}, but an answer fetched less than a second (and
   * less than a quarter of its value) ago is reused, aged by the time since
   * its request was sent. That is a lower bound of what etcd would say now
   * (the holder may have renewed meanwhile; never an overstatement), so a
   * follower that tries again at the reported expiry is early, never late.
   * Used where a term was just found held (acquire), so that a busy lock's
   * failed tries cost one transaction, not two round trips each.
   */
  private async remainingMsRecent(leaseId: string, o: CallOptions): Promise<number | null> {
    const now = monotonicMs();
    const seen = this.ttlSeen.get(leaseId);
    if (seen && seen.ms !== null) {
      const age = now - seen.sentAt;
      if (age >= 0 && age < Math.min(TTL_REUSE_MS, seen.ms / 4)) return Math.floor(seen.ms - age);
    }
    const ms = await this.remainingMs(leaseId, o);
    if (this.ttlSeen.size >= TTL_SEEN_MAX) this.ttlSeen.clear();
    this.ttlSeen.set(leaseId, { sentAt: now, ms });
    return ms;
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
      remaining = recent ? this.remainingMsRecent(kv.lease, o) : this.remainingMs(kv.lease, o);
      ttlCache?.set(kv.lease, remaining);
    }
    let ms = (await remaining) ?? 0;
    const holder = kv.value.toString("utf8");
    const token = BigInt(kv.create_revision);
    // A term of this store's own ends by its ttl even while its session lives on.
    const h = this.held.get(name);
    if (h && h.token === token && h.holder === holder) {
      ms = Math.max(0, Math.min(ms, Math.floor(h.touchedAt + h.ttlMs - monotonicMs())));
    }
    return { name, holder, token, expiresInMs: ms };
  }

  /**
   * The session lease of `ttlSec` seconds: the live one, or a newly granted
   * one. Callers join a grant in flight unless it has been out for longer
   * than {@link staleAfterMs} (stuck on a member that is down or catching
   * up): then a new grant goes out, usually to another member, and whichever
   * answers first becomes the session (a later one is revoked, unused).
   */
  private async session(ttlSec: number, o: CallOptions): Promise<SessionLease> {
    const s = this.sessions.get(ttlSec);
    if (s && !s.lost) {
      if (!s.idleExpired()) return s;
      s.lost = true;
    }
    const inflight = this.granting.get(ttlSec);
    if (inflight && monotonicMs() - inflight.sentAt < staleAfterMs(ttlSec)) return inflight.p;
    const sentAt = monotonicMs();
    const entry = {
      sentAt,
      p: this.client.leaseClient.leaseGrant({ TTL: ttlSec, ID: 0 }, o).then((r) => {
        const live = this.sessions.get(ttlSec);
        if (live && !live.lost && live.id !== r.ID) {
          // Another grant answered first: this lease carries nothing.
          this.client.leaseClient.leaseRevoke({ ID: r.ID }, this.deadline()).catch(() => {});
          return live;
        }
        const fresh = new SessionLease(r.ID, ttlSec, sentAt, Number(r.TTL), (id) =>
          this.keepAliveOnce(id, ttlSec, this.deadline()),
        );
        this.sessions.set(ttlSec, fresh);
        return fresh;
      }),
    };
    const clear = () => {
      if (this.granting.get(ttlSec) === entry) this.granting.delete(ttlSec);
    };
    entry.p.then(clear, clear);
    this.granting.set(ttlSec, entry);
    return entry.p;
  }

  /**
   * The session lease of `ttlSec` seconds if one is live (not known lost, not
   * idle past its TTL), without granting one. A renewal sends this session's
   * keep-alive beside its read, so a renewal is one round trip. That is
   * safe in either order on the server: the renewal succeeds only if the
   * read shows the term's key on this very session and the keep-alive, sent
   * after the renewal began, finds the session alive. A keep-alive applied
   * before the read: the key was attached to a session that lives at least
   * the TTL from the keep-alive, so from the renewal's start. Applied after
   * the read: an etcd lease that expired in between took the key with it and
   * the keep-alive answers TTL 0 (the term is lost); otherwise the key, on
   * the session at the read, lives as long as the session again (a forced
   * delete in between is the same race as with a keep-alive sent after the
   * read). A key found on another lease is moved onto the session after the
   * keep-alive: it lives as long as the session from then on.
   */
  private liveSession(ttlSec: number): SessionLease | undefined {
    const s = this.sessions.get(ttlSec);
    return s && !s.lost && !s.idleExpired() ? s : undefined;
  }

  /**
   * One keep-alive on a lease, on the store's shared keep-alive stream;
   * returns its TTL in seconds afterwards (0 = expired or revoked).
   */
  private keepAliveOnce(leaseId: string, ttlSec: number, o: CallOptions): Promise<number> {
    return this.keepAlives.send(leaseId, o.deadline, staleAfterMs(ttlSec));
  }

  // ── terms this store holds ────────────────────────────────────────────────
  private hold(lease: LeaseRef, ttlMs: number, since: number): void {
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
        pending: 0,
      });
    }
    if (!this.sweepTimer && !this.closed) {
      this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
      this.sweepTimer.unref();
    }
  }

  private forget(name: string, token?: bigint): void {
    const h = this.held.get(name);
    if (h && (token === undefined || h.token === token)) this.held.delete(name);
  }

  private static overdue(h: Held, now: number): boolean {
    return h.ending !== undefined || now >= h.touchedAt + h.ttlMs;
  }

  /** Ends every term of this store that nobody renewed for a whole ttl. */
  private sweep(): void {
    const now = monotonicMs();
    for (const [name, h] of this.held) {
      if (h.pending === 0 && !h.ending && EtcdStore.overdue(h, now)) void this.end(name, h);
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
  private end(name: string, h: Held): Promise<void> {
    if (h.ending) return h.ending;
    const key = enc(this.leaseKey(name));
    const p = this.txn(
      [
        { key, target: "Create", result: "Equal", create_revision: String(h.token) },
        { key, target: "Value", result: "Equal", value: enc(h.holder) },
      ],
      [{ request_delete_range: { key } }],
      [],
      this.deadline(),
    ).then(
      () => {
        if (this.held.get(name) === h) this.held.delete(name);
      },
      (e: unknown) => {
        this.logger?.debug("etcd: deleting a term past its ttl failed; trying again", {
          lease: name,
          token: h.token,
          err: toEtcdStoreError("end term", e, this.secrets).message,
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
  private async settle(name: string): Promise<void> {
    const h = this.held.get(name);
    if (h && h.pending === 0 && EtcdStore.overdue(h, monotonicMs())) await this.end(name, h);
  }

  // ── LeaseStore ───────────────────────────────────────────────────────────
  /**
   * Only the newest acquire of a name through this store may take over a
   * stale term of the same holder. Taking over takes two transactions
   * (delete, then put), so an older acquire still running after its caller
   * gave up on it (an elector's timeout) could otherwise delete the term a
   * newer acquire had just started, and let another holder in while that term
   * is trusted. The newer acquire is numbered before any of its I/O, so an
   * older one that reads the newer term always sees that it is not the newest.
   */
  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    validateLeaseName(name);
    validateHolder(holder, "holder");
    validateTtl(ttlMs);
    const since = monotonicMs();
    const seq = ++this.acquireSeq;
    this.newestAcquire.set(name, seq);
    try {
      await this.settle(name);
      return await this.acquireNow(name, holder, ttlMs, seq, since);
    } finally {
      if (this.newestAcquire.get(name) === seq) this.newestAcquire.delete(name);
    }
  }

  private async acquireNow(
    name: string,
    holder: string,
    ttlMs: number,
    seq: number,
    since: number,
  ): Promise<AcquireResult> {
    const key = enc(this.leaseKey(name));
    return this.run("acquire", async (o) => {
      // A session lease can expire between our use of it and its keep-alive
      // (a stall): then the key went with it. Try once more on a new session.
      for (let attempt = 1; ; attempt++) {
        const session = await this.session(ttlSeconds(ttlMs), o);
        // The keep-alive runs beside the transaction: the session (and so the
        // new key) then lives at least ttl from `since`.
        const alive = session.refresh(since);
        alive.catch(() => {});
        let r: ITxnResponse;
        try {
          r = await this.putOrTakeOver(key, name, holder, session.id, seq, o);
        } catch (e) {
          if (attempt < 2 && toEtcdStoreError("acquire", e).code === "LEASE_NOT_FOUND") {
            session.lost = true;
            continue;
          }
          throw e;
        }
        if (!r.succeeded) {
          const cur = r.responses[0]?.response_range.kvs[0];
          return {
            acquired: false as const,
            current: cur ? await this.info("acquire", name, cur, o, undefined, true) : null,
          };
        }
        // The header revision of a write transaction is the revision of its
        // put: the new key's create revision.
        const lease = { name, holder, token: BigInt(r.header.revision) };
        if ((await alive) > 0) {
          this.hold(lease, ttlMs, since);
          return { acquired: true as const, lease };
        }
        // The session expired under the new key: the key is gone with it.
        session.lost = true;
        if (attempt >= 2) return { acquired: false as const, current: null };
      }
    });
  }

  /**
   * Puts the key if it is absent; if it holds a stale term of the same holder
   * and this is the newest acquire of the name, ends that term and tries the
   * put again. etcd refuses a delete and a put of one key in one transaction,
   * so this takes two; another holder may win in between, which is then an
   * ordinary lost race. The failure branch reads the key.
   */
  private async putOrTakeOver(
    key: Buffer,
    name: string,
    holder: string,
    leaseId: string,
    seq: number,
    o: CallOptions,
  ): Promise<ITxnResponse> {
    const putIfAbsent = () =>
      this.txn(
        [{ key, target: "Create", result: "Equal", create_revision: 0 }],
        [{ request_put: { key, value: enc(holder), lease: leaseId } }],
        [{ request_range: { key } }],
        o,
      );
    const r = await putIfAbsent();
    if (r.succeeded) return r;
    const cur = r.responses[0]?.response_range.kvs[0];
    if (!cur || cur.value.toString("utf8") !== holder || this.newestAcquire.get(name) !== seq) {
      return r;
    }
    await this.txn(
      [
        { key, target: "Create", result: "Equal", create_revision: cur.create_revision },
        { key, target: "Value", result: "Equal", value: enc(holder) },
      ],
      [{ request_delete_range: { key } }],
      [],
      o,
    );
    this.forget(name, BigInt(cur.create_revision));
    return putIfAbsent();
  }

  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateLeaseRef(lease);
    validateTtl(ttlMs);
    const since = monotonicMs();
    const key = enc(this.leaseKey(lease.name));
    const h = this.held.get(lease.name);
    const mine = h !== undefined && h.token === lease.token && h.holder === lease.holder;
    if (mine && EtcdStore.overdue(h, since)) {
      // Past its ttl here: the term is over even if its session still lives.
      this.check();
      void this.end(lease.name, h);
      return { renewed: false, current: null };
    }
    if (mine) h.pending++;
    try {
      return await this.run("renew", async (o) => {
        // One round trip: with a live session of this TTL, its keep-alive
        // goes out beside the read (see liveSession for why that is safe).
        const ttlSec = ttlSeconds(ttlMs);
        const live = this.liveSession(ttlSec);
        const early = live?.refresh(since);
        early?.catch(() => {});
        const kv = await this.readKey(key);
        if (!kv) {
          this.forget(lease.name, lease.token);
          return { renewed: false as const, current: null };
        }
        const holder = kv.value.toString("utf8");
        if (BigInt(kv.create_revision) !== lease.token || holder !== lease.holder) {
          this.forget(lease.name, lease.token);
          return { renewed: false as const, current: await this.info("renew", lease.name, kv, o) };
        }
        if (!kv.lease || kv.lease === "0") {
          throw this.schemaError("renew", `key ${this.leaseKey(lease.name)} has no etcd lease`);
        }
        let session = live ?? (await this.session(ttlSec, o));
        if (kv.lease !== session.id) {
          // Another TTL, an expired session, or a key from another store of
          // the same holder: move the key onto this session, guarded so only
          // this term's key moves (the create revision, the token, is kept).
          const move = (id: string) =>
            this.txn(
              [
                { key, target: "Create", result: "Equal", create_revision: String(lease.token) },
                { key, target: "Value", result: "Equal", value: enc(lease.holder) },
                { key, target: "Lease", result: "Equal", lease: kv.lease },
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
            session = await this.session(ttlSec, o);
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
              this.forget(lease.name, lease.token);
              return {
                renewed: false as const,
                current: cur ? await this.info("renew", lease.name, cur, o) : null,
              };
            }
          }
        }
        const ttlLeft = session === live && early ? await early : await session.refresh(since);
        if (ttlLeft <= 0) {
          // The session expired (a stall, a partition): the term is over.
          this.forget(lease.name, lease.token);
          const now = await this.getKv(key, o);
          return {
            renewed: false as const,
            current: now ? await this.info("renew", lease.name, now, o) : null,
          };
        }
        this.hold(lease, ttlMs, since);
        return { renewed: true as const };
      });
    } finally {
      if (mine) h.pending--;
    }
  }

  /** One keep-alive per session and one read transaction per batch: see renew-many.ts. */
  renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return renewMany(this.batchContext(), items);
  }

  private batchContext(): EtcdRenewManyContext {
    return {
      run: (fn) => this.run("renewMany", fn),
      key: (name) => this.leaseKey(name),
      begin: (lease, since) => {
        const h = this.held.get(lease.name);
        if (!h || h.token !== lease.token || h.holder !== lease.holder) return () => {};
        if (EtcdStore.overdue(h, since)) {
          // Past its ttl here: the term is over even if its session still lives.
          this.check();
          void this.end(lease.name, h);
          return "over";
        }
        h.pending++;
        return () => {
          h.pending--;
        };
      },
      liveSession: (ttlSec) => this.liveSession(ttlSec),
      ttlSeconds,
      read: async (ops, o) =>
        (await this.txn([], ops, [], o)).responses.map((r) => r.response_range),
      info: (name, kv, o) => this.info("renewMany", name, kv, o),
      forget: (name, token) => this.forget(name, token),
      hold: (lease, ttlMs, since) => this.hold(lease, ttlMs, since),
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
      this.forget(lease.name, lease.token);
      return r.succeeded;
    });
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    const key = enc(this.leaseKey(name));
    return this.run("read", async (o) => {
      await this.settle(name);
      const kv = await this.getKv(key, o);
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
        return !(h && h.token === i.token && EtcdStore.overdue(h, monotonicMs()));
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
      this.forget(name);
      return Number(r.deleted) > 0;
    });
  }

  async watch(name: string, onChange: (event: LeaseEvent) => void): Promise<Unwatch> {
    validateLeaseName(name);
    this.check();
    const emit = (type: LeaseEvent["type"]) => {
      try {
        onChange({ name, type });
      } catch {
        // a watcher's failure is its own business
      }
    };
    // Like etcd3's create(), but bounded: an unreachable cluster fails the
    // call within the deadline instead of waiting for the stream forever.
    const w = this.client.watch().key(this.leaseKey(name)).watcher();
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        w.once("connected", () => resolve());
        w.once("error", reject);
        timer = setTimeout(
          () =>
            reject(
              new StoreError(
                `tenure etcd: watch failed: not connected within ${this.callTimeoutMs} ms`,
                {
                  transient: true,
                  kind: "timeout",
                  code: "DEADLINE_EXCEEDED",
                },
              ),
            ),
          this.callTimeoutMs,
        );
      });
    } catch (e) {
      await w.cancel().catch(() => {});
      throw toEtcdStoreError("watch", e, this.secrets);
    } finally {
      clearTimeout(timer);
    }
    w.on("put", (kv) => emit(kv.version === "1" ? "acquired" : "changed"));
    w.on("delete", () => emit("released"));
    // The watch manager reconnects by itself; errors are logged, not thrown.
    w.on("error", (e) =>
      this.logger?.debug("etcd watch error; reconnecting", {
        lease: name,
        err: toEtcdStoreError("watch", e, this.secrets).message,
      }),
    );
    this.watchers.add(w);
    return async () => {
      if (!this.watchers.delete(w)) return;
      await w.cancel().catch(() => {});
    };
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
    validateLeaseName(name);
    validateFencedKey(key);
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
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.keepAlives.close();
    const ws = [...this.watchers];
    this.watchers.clear();
    await Promise.allSettled(ws.map((w) => w.cancel()));
    await Promise.allSettled([...this.background]);
    if (this.ownsClient) this.client.close();
  }
}
