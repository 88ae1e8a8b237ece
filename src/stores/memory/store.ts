import { type Clock, systemClock } from "../../clock.js";
import { type Logger, noopLogger } from "../../logger.js";
import type {
  AcquireItem,
  AcquireResult,
  FencedPutResult,
  FencedValue,
  LeaseInfo,
  LeaseRef,
  LeaseStore,
  ListOptions,
  RenewItem,
  RenewResult,
  Unwatch,
} from "../../store/types.js";
import {
  validateAcquire,
  validateAcquireItems,
  validateFencedGet,
  validateFencedPut,
  validateLeaseName,
  validateLeaseRef,
  validateReleaseItems,
  validateRenew,
} from "../../store/validate.js";
import { closedError } from "../common/errors.js";
import { type WatchCallback, WatcherSet } from "../common/watchers.js";

const RENEWED: RenewResult = Object.freeze({ renewed: true });

interface Row {
  holder: string | null;
  token: bigint;
  expiresAt: number;
}

export interface MemoryStoreOptions {
  /** Clock that judges expiry. Default: the system monotonic clock. */
  clock?: Clock;
  /** Where a watcher that throws is logged. Default: silent. */
  logger?: Logger;
}

/**
 * An in-process lease store: the reference every other backend is held to.
 * For tests and single-process apps. Expiry is judged by the injected clock;
 * watchers are notified synchronously after each change.
 */
export class MemoryStore implements LeaseStore {
  readonly kind = "memory";
  readonly notifies = true;
  private readonly clock: Clock;
  private readonly rows = new Map<string, Row>();
  private readonly data = new Map<string, FencedValue>();
  private readonly watchers: WatcherSet;
  private closed = false;

  constructor(opts: MemoryStoreOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.watchers = new WatcherSet(opts.logger ?? noopLogger);
  }

  private check(op: string): void {
    if (this.closed) throw closedError("memory", op);
  }

  private live(name: string): (Row & { holder: string }) | null {
    const row = this.rows.get(name);
    if (!row || row.holder === null || row.expiresAt <= this.clock.now()) return null;
    return row as Row & { holder: string };
  }

  private info(name: string, row: Row & { holder: string }): LeaseInfo {
    return {
      name,
      holder: row.holder,
      token: row.token,
      expiresInMs: Math.max(0, row.expiresAt - this.clock.now()),
    };
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    validateAcquire(name, holder, ttlMs);
    this.check("acquire");
    return this.acquireOne(name, holder, ttlMs);
  }

  /** Acquires every item in one step, in order; each is judged exactly as {@link acquire} would. */
  async acquireMany(items: readonly AcquireItem[]): Promise<AcquireResult[]> {
    validateAcquireItems(items);
    this.check("acquireMany");
    return items.map((it) => this.acquireOne(it.name, it.holder, it.ttlMs));
  }

  private acquireOne(name: string, holder: string, ttlMs: number): AcquireResult {
    const cur = this.live(name);
    if (cur && cur.holder !== holder) return { acquired: false, current: this.info(name, cur) };
    if (cur?.holder === holder) {
      // Held live by this holder: its term goes on (the same token), extended as by a renewal.
      cur.expiresAt = this.clock.now() + ttlMs;
      return { acquired: true, lease: { name, holder, token: cur.token } };
    }
    const token = (this.rows.get(name)?.token ?? 0n) + 1n;
    this.rows.set(name, { holder, token, expiresAt: this.clock.now() + ttlMs });
    this.watchers.emit(name, { name, type: "acquired", token });
    return { acquired: true, lease: { name, holder, token } };
  }

  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateRenew(lease, ttlMs);
    this.check("renew");
    return this.renewOne(lease, ttlMs);
  }

  /** Renews every item in one step; each is judged alone, exactly as {@link renew} would. */
  async renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    for (const it of items) validateRenew(it.lease, it.ttlMs);
    this.check("renewMany");
    return items.map((it) => this.renewOne(it.lease, it.ttlMs));
  }

  private renewOne(lease: LeaseRef, ttlMs: number): RenewResult {
    const cur = this.live(lease.name);
    if (!cur || cur.holder !== lease.holder || cur.token !== lease.token) {
      return { renewed: false, current: cur ? this.info(lease.name, cur) : null };
    }
    cur.expiresAt = this.clock.now() + ttlMs;
    return RENEWED;
  }

  async release(lease: LeaseRef): Promise<boolean> {
    validateLeaseRef(lease);
    this.check("release");
    return this.releaseOne(lease);
  }

  /** Releases every item in one step; each is judged alone, exactly as {@link release} would. */
  async releaseMany(leases: readonly LeaseRef[]): Promise<boolean[]> {
    validateReleaseItems(leases);
    this.check("releaseMany");
    return leases.map((l) => this.releaseOne(l));
  }

  private releaseOne(lease: LeaseRef): boolean {
    const row = this.rows.get(lease.name);
    if (!row || row.holder !== lease.holder || row.token !== lease.token) return false;
    const wasLive = row.expiresAt > this.clock.now();
    row.holder = null;
    row.expiresAt = 0;
    this.watchers.emit(lease.name, { name: lease.name, type: "released" });
    return wasLive;
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    this.check("read");
    const cur = this.live(name);
    return cur ? this.info(name, cur) : null;
  }

  async list(_opts?: ListOptions): Promise<LeaseInfo[]> {
    this.check("list");
    const out: LeaseInfo[] = [];
    for (const name of [...this.rows.keys()].sort()) {
      const cur = this.live(name);
      if (cur) out.push(this.info(name, cur));
    }
    return out;
  }

  async forceRelease(name: string): Promise<boolean> {
    validateLeaseName(name);
    this.check("forceRelease");
    const cur = this.live(name);
    if (!cur) return false;
    const row: Row = cur;
    row.holder = null;
    row.expiresAt = 0;
    this.watchers.emit(name, { name, type: "released" });
    return true;
  }

  async watch(name: string, onChange: WatchCallback): Promise<Unwatch> {
    validateLeaseName(name);
    this.check("watch");
    this.watchers.add(name, onChange);
    return async () => {
      this.watchers.delete(name, onChange);
    };
  }

  async putFenced(
    lease: Pick<LeaseRef, "name" | "holder" | "token">,
    key: string,
    value: string,
    opts?: { expect?: string | null },
  ): Promise<FencedPutResult> {
    validateFencedPut(lease, key, value, opts);
    this.check("putFenced");
    const row = this.rows.get(lease.name);
    if (!row || row.token !== lease.token) return { ok: false, reason: "fenced" };
    const k = `${lease.name}\u0000${key}`;
    if (opts && opts.expect !== undefined) {
      const cur = this.data.get(k)?.value ?? null;
      if (cur !== opts.expect) return { ok: false, reason: "conflict" };
    }
    this.data.set(k, { value, token: lease.token });
    return { ok: true };
  }

  async getFenced(name: string, key: string): Promise<FencedValue | null> {
    validateFencedGet(name, key);
    this.check("getFenced");
    return this.data.get(`${name}\u0000${key}`) ?? null;
  }

  /** `await using store = …`: closes the store at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
  }
}
