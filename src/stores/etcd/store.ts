/**
 * The etcd v3 lease store. One etcd key per lease, attached to an etcd lease
 * (TTL in whole seconds); the fencing token is the key's create revision.
 * See docs/stores/etcd.md for the guarantees and the key layout.
 */
import type { Etcd3, ICompare, IKeyValue, IRequestOp, ITxnResponse, Watcher } from "etcd3";
import { ConfigError, StoreError } from "../../errors.js";
import type { Logger } from "../../logger.js";
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
} from "../../store/types.js";
import { validateHolder, validateLeaseName, validateTtl } from "../../store/validate.js";
import { toEtcdStoreError } from "./classify.js";

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

interface KeepAliveStream {
  on(event: "data", fn: (res: { TTL: string }) => void): unknown;
  on(event: "error", fn: (e: unknown) => void): unknown;
  write(req: { ID: string }): unknown;
  end(): unknown;
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
export class EtcdStore implements LeaseStore {
  readonly kind = "etcd";
  readonly notifies = true;
  readonly prefix: string;
  private readonly client: EtcdClientLike;
  private readonly callTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly ownsClient: boolean;
  private readonly secrets: readonly string[];
  /** etcd lease ID → the TTL (seconds) this store asked for, so renew knows when to re-lease. */
  private readonly requestedTtl = new Map<string, number>();
  private readonly background = new Set<Promise<void>>();
  /** Per lease name: the number of the newest acquire this store started. */
  private readonly newestAcquire = new Map<string, number>();
  private acquireSeq = 0;
  private readonly watchers = new Set<Watcher>();
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

  /** Remaining TTL of an etcd lease in ms (whole seconds, rounded down by etcd); null once it is gone. */
  private async remainingMs(leaseId: string, o: CallOptions): Promise<number | null> {
    const r = await this.client.leaseClient.leaseTimeToLive({ ID: leaseId }, o);
    const ttl = Number(r.TTL);
    return ttl < 0 ? null : ttl * 1000;
  }

  private async info(op: string, name: string, kv: IKeyValue, o: CallOptions): Promise<LeaseInfo> {
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
    const ms = await this.remainingMs(kv.lease, o);
    return {
      name,
      holder: kv.value.toString("utf8"),
      token: BigInt(kv.create_revision),
      expiresInMs: ms ?? 0,
    };
  }

  private async grant(ttlSec: number, o: CallOptions): Promise<string> {
    const g = await this.client.leaseClient.leaseGrant({ TTL: ttlSec, ID: 0 }, o);
    this.requestedTtl.set(g.ID, ttlSec);
    if (this.requestedTtl.size > 10_000) {
      const first = this.requestedTtl.keys().next().value;
      if (first !== undefined) this.requestedTtl.delete(first);
    }
    return g.ID;
  }

  /** Revokes an etcd lease in the background (bounded by the call timeout); close() waits for it. */
  private revokeLater(leaseId: string): void {
    this.requestedTtl.delete(leaseId);
    const p = this.client.leaseClient
      .leaseRevoke({ ID: leaseId }, this.deadline())
      .then(
        () => undefined,
        (e: unknown) => {
          const err = toEtcdStoreError("revoke lease", e, this.secrets);
          // Gone already is fine; anything else just leaves a keyless lease to expire.
          if (err.code !== "LEASE_NOT_FOUND") {
            this.logger?.debug("etcd lease revoke failed; it will expire by itself", {
              err: err.message,
            });
          }
        },
      )
      .finally(() => this.background.delete(p));
    this.background.add(p);
  }

  /** One keep-alive on a lease; returns its TTL in seconds afterwards (0 = expired or revoked). */
  private async keepAliveOnce(leaseId: string, o: CallOptions): Promise<number> {
    const stream = (await this.client.leaseClient.leaseKeepAlive(o)) as unknown as KeepAliveStream;
    try {
      const res = await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on("data", resolve);
        stream.on("error", reject);
        stream.write({ ID: leaseId });
      });
      return Number(res.TTL);
    } finally {
      stream.on("error", () => {});
      stream.end();
    }
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
    const seq = ++this.acquireSeq;
    this.newestAcquire.set(name, seq);
    try {
      return await this.acquireNow(name, holder, ttlMs, seq);
    } finally {
      if (this.newestAcquire.get(name) === seq) this.newestAcquire.delete(name);
    }
  }

  private async acquireNow(
    name: string,
    holder: string,
    ttlMs: number,
    seq: number,
  ): Promise<AcquireResult> {
    const key = enc(this.leaseKey(name));
    return this.run("acquire", async (o) => {
      const leaseId = await this.grant(ttlSeconds(ttlMs), o);
      let done = false;
      try {
        const putIfAbsent = () =>
          this.txn(
            [{ key, target: "Create", result: "Equal", create_revision: 0 }],
            [{ request_put: { key, value: enc(holder), lease: leaseId } }],
            [{ request_range: { key } }],
            o,
          );
        let r = await putIfAbsent();
        if (!r.succeeded) {
          const cur = r.responses[0]?.response_range.kvs[0];
          const newest = this.newestAcquire.get(name) === seq;
          if (cur && cur.value.toString("utf8") === holder && newest) {
            // A stale term of the same holder: end it, then start a new term
            // (a new create revision). etcd refuses a delete and a put of one
            // key in one transaction, so this takes two; another holder may
            // win in between, which is then an ordinary lost race.
            const del = await this.txn(
              [
                { key, target: "Create", result: "Equal", create_revision: cur.create_revision },
                { key, target: "Value", result: "Equal", value: enc(holder) },
              ],
              [{ request_delete_range: { key } }],
              [],
              o,
            );
            if (del.succeeded && cur.lease && cur.lease !== "0") this.revokeLater(cur.lease);
            r = await putIfAbsent();
          }
        }
        if (r.succeeded) {
          done = true;
          // The header revision of a write transaction is the revision of its
          // put: the new key's create revision.
          return {
            acquired: true as const,
            lease: { name, holder, token: BigInt(r.header.revision) },
          };
        }
        const cur = r.responses[0]?.response_range.kvs[0];
        return {
          acquired: false as const,
          current: cur ? await this.info("acquire", name, cur, o) : null,
        };
      } finally {
        if (!done) this.revokeLater(leaseId);
      }
    });
  }

  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateLeaseName(lease.name, "lease.name");
    validateTtl(ttlMs);
    const key = enc(this.leaseKey(lease.name));
    return this.run("renew", async (o) => {
      const kv = await this.getKv(key, o);
      if (!kv) return { renewed: false as const, current: null };
      const holder = kv.value.toString("utf8");
      if (BigInt(kv.create_revision) !== lease.token || holder !== lease.holder) {
        return { renewed: false as const, current: await this.info("renew", lease.name, kv, o) };
      }
      if (!kv.lease || kv.lease === "0") {
        throw this.schemaError("renew", `key ${this.leaseKey(lease.name)} has no etcd lease`);
      }
      const want = ttlSeconds(ttlMs);
      const asked = this.requestedTtl.get(kv.lease);
      if (asked === undefined || asked === want) {
        const ttl = await this.keepAliveOnce(kv.lease, o);
        if (ttl <= 0) {
          // The etcd lease expired (or was revoked): the term is over.
          const now = await this.getKv(key, o);
          return {
            renewed: false as const,
            current: now ? await this.info("renew", lease.name, now, o) : null,
          };
        }
        // Keep-alive restores the TTL the lease was granted with. Longer than
        // asked is safe (the server outlives the client's deadline); shorter
        // is not: move the key to a new lease below.
        if (asked === want || ttl >= want) return { renewed: true as const };
      }
      // The requested TTL differs from the lease's: attach the key to a new
      // lease, guarded so only this term's key moves (create revision keeps
      // the token).
      const fresh = await this.grant(want, o);
      let moved = false;
      try {
        const r = await this.txn(
          [
            { key, target: "Create", result: "Equal", create_revision: String(lease.token) },
            { key, target: "Value", result: "Equal", value: enc(lease.holder) },
            { key, target: "Lease", result: "Equal", lease: kv.lease },
          ],
          [{ request_put: { key, value: enc(lease.holder), lease: fresh } }],
          [{ request_range: { key } }],
          o,
        );
        if (r.succeeded) {
          moved = true;
          this.revokeLater(kv.lease);
          return { renewed: true as const };
        }
        const cur = r.responses[0]?.response_range.kvs[0];
        if (
          cur &&
          BigInt(cur.create_revision) === lease.token &&
          cur.value.toString("utf8") === lease.holder
        ) {
          // Only the etcd lease changed: a concurrent renew of this same term
          // moved the key first. The term still holds the lease.
          return { renewed: true as const };
        }
        return {
          renewed: false as const,
          current: cur ? await this.info("renew", lease.name, cur, o) : null,
        };
      } finally {
        if (!moved) this.revokeLater(fresh);
      }
    });
  }

  async release(lease: LeaseRef): Promise<boolean> {
    validateLeaseName(lease.name, "lease.name");
    if (lease.token <= 0n) return false;
    const key = enc(this.leaseKey(lease.name));
    return this.run("release", async (o) => {
      const r = await this.txn(
        [
          { key, target: "Create", result: "Equal", create_revision: String(lease.token) },
          { key, target: "Value", result: "Equal", value: enc(lease.holder) },
        ],
        [{ request_delete_range: { key, prev_kv: true } }],
        [],
        o,
      );
      if (!r.succeeded) return false;
      const prev = r.responses[0]?.response_delete_range.prev_kvs[0];
      if (prev?.lease && prev.lease !== "0") this.revokeLater(prev.lease);
      return true;
    });
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    const key = enc(this.leaseKey(name));
    return this.run("read", async (o) => {
      const kv = await this.getKv(key, o);
      return kv ? this.info("read", name, kv, o) : null;
    });
  }

  async list(): Promise<LeaseInfo[]> {
    const p = enc(`${this.prefix}lease/`);
    return this.run("list", async (o) => {
      const r = await this.client.kv.range({ key: p, range_end: prefixEnd(p) }, o);
      return Promise.all(
        r.kvs.map((kv) => this.info("list", kv.key.subarray(p.length).toString("utf8"), kv, o)),
      );
    });
  }

  async forceRelease(name: string): Promise<boolean> {
    validateLeaseName(name);
    const key = enc(this.leaseKey(name));
    return this.run("forceRelease", async (o) => {
      const r = await this.client.kv.deleteRange({ key, prev_kv: true }, o);
      const prev = r.prev_kvs[0];
      if (!prev) return false;
      if (prev.lease && prev.lease !== "0") this.revokeLater(prev.lease);
      return true;
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
    lease: Pick<LeaseRef, "name" | "token">,
    key: string,
    value: string,
    opts: { expect?: string | null } = {},
  ): Promise<FencedPutResult> {
    validateLeaseName(lease.name, "lease.name");
    validateKey(key);
    if (typeof value !== "string") throw new ConfigError("value", "must be a string");
    if (lease.token <= 0n) return { ok: false, reason: "fenced" };
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
    validateKey(key);
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

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const ws = [...this.watchers];
    this.watchers.clear();
    await Promise.allSettled(ws.map((w) => w.cancel()));
    await Promise.allSettled([...this.background]);
    if (this.ownsClient) this.client.close();
  }
}

function validateKey(key: unknown): void {
  if (typeof key !== "string" || key.length === 0 || key.length > 1024) {
    throw new ConfigError("key", "must be a non-empty string of at most 1024 characters");
  }
}
