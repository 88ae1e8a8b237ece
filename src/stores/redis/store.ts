import { ConfigError, FencedError, StoreError } from "../../errors.js";
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
  LEASE_NAME_PATTERN,
  validateAcquire,
  validateFencedGet,
  validateFencedPut,
  validateLeaseName,
  validateLeaseRef,
  validateRenew,
  validateTtl,
} from "../../store/validate.js";
import { closedError, schemaError } from "../common/errors.js";
import { type WatchCallback, WatcherSet } from "../common/watchers.js";
import { acquireMany } from "./acquire-many.js";
import { classifyRedisError, toRedisStoreError } from "./classify.js";
import { releaseMany } from "./release-many.js";
import { renewMany } from "./renew-many.js";
import { SCRIPTS, type ScriptClient } from "./scripts.js";
import { perSlot } from "./slots.js";
import { SubscriptionBatcher } from "./subscriptions.js";

/** Default key prefix: keys look like `tenure:{name}:lease`. */
export const DEFAULT_KEY_PREFIX = "tenure:";

/** Most leases one READ_MANY script of `list()` reads. */
const LIST_READ_BATCH = 1000;

/** Key prefixes: empty, or up to 64 characters of `A–Z a–z 0–9 . _ : / -` (no braces, no globs). */
const PREFIX_PATTERN = /^[A-Za-z0-9._:/-]{0,64}$/;

/**
 * The part of an ioredis connection (`Redis` or `Cluster`) the store uses:
 * scripts, plus SCAN for {@link RedisStore.list}. Cluster clients also offer
 * `nodes("master")`, which `list()` scans one by one.
 */
export interface RedisClientLike extends ScriptClient {
  scan(
    cursor: string,
    matchToken: "MATCH",
    pattern: string,
    countToken: "COUNT",
    count: number,
  ): Promise<[string, string[]]>;
  /** ioredis Cluster: the master nodes, each scanned by `list()`. */
  nodes?(role?: "master"): RedisClientLike[];
  /** Used to create the watch subscriber when no `subscriber` factory is given. */
  duplicate?(): RedisSubscriberLike;
  /**
   * Connection events: the store listens to `error` and `ready` to remember a
   * credentials failure while reconnecting, so calls report it (fatal `auth`)
   * instead of a mere timeout.
   */
  on?(event: string, listener: (...args: unknown[]) => void): unknown;
  off?(event: string, listener: (...args: unknown[]) => void): unknown;
  /** ioredis connection status (`ready`, `reconnecting`…), when the client has one. */
  readonly status?: string;
  /** When the client was created with ioredis' own `keyPrefix`, the store refuses it (use `keyPrefix` here). */
  options?: { keyPrefix?: string };
}

/** The part of an ioredis connection used as the dedicated subscriber of `watch`. */
export interface RedisSubscriberLike {
  subscribe(...channels: string[]): Promise<unknown>;
  unsubscribe(...channels: string[]): Promise<unknown>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect?(): void;
}

/** Options of {@link RedisStore}. */
export interface RedisStoreOptions {
  /**
   * Prefix of every key and channel the store uses: up to 64 characters of
   * `A–Z a–z 0–9 . _ : / -`. Default `"tenure:"` (keys `tenure:{name}:lease`,
   * `tenure:{name}:token`, `tenure:{name}:data`, channel `tenure:{name}:events`).
   */
  keyPrefix?: string;
  /**
   * Creates the dedicated subscriber connection `watch` uses (created lazily on
   * the first watch, shared by all watches). Default: `client.duplicate()`
   * when the client has it, else `watch` is unavailable and `notifies` is false.
   * A subscriber created through this factory is closed by `close()`.
   */
  subscriber?: () => RedisSubscriberLike;
  /** Where reconnects and subscriber trouble are logged. Default: silent. */
  logger?: Logger;
  /**
   * Restart guard: a server that has been up for less than the ttl grants no
   * free lease (acquire answers "not now" until one ttl after its start), so a
   * crash that lost the lease cannot give a second leader a term while the
   * first still trusts its own. Costs up to one ttl of leaderlessness after a
   * Redis restart. Turn off only for a Redis whose every write is durable
   * (AOF `appendfsync always`) and that never fails over to a replica behind
   * it. Default true. URL: `?restartGuard=false`.
   */
  restartGuard?: boolean;
  /**
   * Closes `client` in `close()` (QUIT). Default false for a client you pass
   * in; `openRedisStore` sets it for the connection it opens.
   */
  ownsClient?: boolean;
  /** Closes the client the store owns. Internal: set by `openRedisStore`. */
  closeClient?: () => Promise<void>;
  /** Strings that must never appear in error messages (the URL's password). Internal. */
  secrets?: readonly string[];
}

/** Options of {@link RedisStore.fencedSet}. */
export interface FencedSetOptions {
  /** Expire the user's key after this many milliseconds (SET … PX). Default: no expiry. */
  pxMs?: number;
}

type Reply = unknown;

/**
 * A lease store on Redis (standalone, Sentinel-managed or Cluster) through
 * ioredis. One Lua script per operation, expiry by the server's clock (PX),
 * fencing tokens floored by the server's TIME so they keep increasing even if
 * Redis loses its data, release notifications over pub/sub.
 */
export class RedisStore implements LeaseStore {
  readonly kind = "redis";
  readonly notifies: boolean;
  private readonly client: RedisClientLike;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly secrets: readonly string[];
  private readonly makeSubscriber: (() => RedisSubscriberLike) | undefined;
  private readonly closeClient: (() => Promise<void>) | undefined;
  private readonly restartGuard: boolean;
  /** Set while acquires are refused by the restart guard, so it is logged once per restart. */
  private guarded = false;
  private sub: RedisSubscriberLike | undefined;
  private subReady: Promise<void> | undefined;
  private readonly watchers: WatcherSet;
  /** SUBSCRIBE / UNSUBSCRIBE of one turn go out together (electors started together). */
  private readonly subs = new SubscriptionBatcher(() => (this.closed ? undefined : this.sub));
  private closed = false;
  /** The last connection failure that retrying cannot fix (bad credentials), until the next `ready`. */
  private fatalConnError: unknown;
  private readonly onClientError = (e: unknown) => {
    const c = classifyRedisError(e);
    if (!c.transient && c.kind === "auth") this.fatalConnError = e;
  };
  private readonly onClientReady = () => {
    this.fatalConnError = undefined;
  };

  constructor(client: RedisClientLike, opts: RedisStoreOptions = {}) {
    if (!client || typeof client.evalsha !== "function" || typeof client.eval !== "function") {
      throw new ConfigError("client", "must be an ioredis Redis or Cluster instance");
    }
    const prefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
    if (typeof prefix !== "string" || !PREFIX_PATTERN.test(prefix)) {
      throw new ConfigError(
        "keyPrefix",
        `must be up to 64 characters of A–Z a–z 0–9 . _ : / - (got ${JSON.stringify(prefix)})`,
      );
    }
    if (client.options?.keyPrefix) {
      throw new ConfigError(
        "client",
        "an ioredis client with its own keyPrefix would break SCAN and pub/sub; pass keyPrefix to the store instead",
      );
    }
    this.client = client;
    this.prefix = prefix;
    this.logger = opts.logger ?? noopLogger;
    this.watchers = new WatcherSet(this.logger);
    this.secrets = opts.secrets ?? [];
    if (opts.restartGuard !== undefined && typeof opts.restartGuard !== "boolean") {
      throw new ConfigError(
        "restartGuard",
        `must be true or false (got ${String(opts.restartGuard)})`,
      );
    }
    this.restartGuard = opts.restartGuard ?? true;
    this.makeSubscriber =
      opts.subscriber ??
      (typeof client.duplicate === "function"
        ? () =>
            // Resubscribing is ours (on "ready", with its failure handled): ioredis'
            // own resubscribe leaves its promise unhandled, and a connection that
            // closes again before the reply then crashes the process.
            (client.duplicate as (o: object) => RedisSubscriberLike).call(client, {
              autoResubscribe: false,
            })
        : undefined);
    this.notifies = this.makeSubscriber !== undefined;
    this.closeClient = opts.closeClient ?? (opts.ownsClient ? defaultClose(client) : undefined);
    if (typeof client.on === "function") {
      client.on("error", this.onClientError as (...args: unknown[]) => void);
      client.on("ready", this.onClientReady);
    }
  }

  /** The hash tag of a lease's keys: `{name}`. */
  private tag(name: string): string {
    return `${this.prefix}{${name}}`;
  }

  /**
   * A key for your own data that shares the lease's hash tag, e.g.
   * `taggedKey("billing", "cursor")` → `tenure:{billing}:user:cursor`. In Redis
   * Cluster the key given to {@link fencedSet}/{@link fencedHset} must hash to
   * the lease's slot; keys built here always do.
   */
  taggedKey(name: string, suffix: string): string {
    validateLeaseName(name);
    if (typeof suffix !== "string" || suffix.length === 0) {
      throw new ConfigError("suffix", "must be a non-empty string");
    }
    return `${this.tag(name)}:user:${suffix}`;
  }

  private keys(name: string) {
    const t = this.tag(name);
    return {
      lease: `${t}:lease`,
      token: `${t}:token`,
      data: `${t}:data`,
      events: `${t}:events`,
      boot: `${t}:boot`,
    };
  }

  private check(op: string): void {
    if (this.closed) throw closedError("redis", op);
  }

  private async run(
    op: string,
    script: keyof typeof SCRIPTS,
    keys: string[],
    args: string[],
    client: RedisClientLike = this.client,
  ): Promise<Reply> {
    this.check(op);
    if (this.fatalConnError !== undefined && this.client.status !== undefined) {
      // Reconnecting with credentials the server refuses: fail fast instead of queueing.
      if (this.client.status !== "ready") throw this.wrap(op, this.fatalConnError);
    }
    try {
      return await SCRIPTS[script].run(client, keys, args);
    } catch (e) {
      throw this.wrap(op, e);
    }
  }

  /** A call that timed out or lost its connection while the server rejects our credentials fails as `auth`. */
  private wrap(op: string, e: unknown): StoreError {
    const err = toRedisStoreError(op, e, this.secrets);
    if (err.transient && this.fatalConnError !== undefined) {
      return toRedisStoreError(op, this.fatalConnError, this.secrets);
    }
    return err;
  }

  private schemaError(op: string, what: string): StoreError {
    return schemaError("redis", op, `reply ${what}`);
  }

  private token(op: string, v: unknown): bigint {
    if (typeof v !== "string" || !/^[1-9][0-9]*$/.test(v)) {
      throw this.schemaError(op, `token ${JSON.stringify(v)}`);
    }
    return BigInt(v);
  }

  private info(op: string, name: string, tok: unknown, holder: unknown, ttl: unknown): LeaseInfo {
    if (typeof holder !== "string" || typeof ttl !== "number") {
      throw this.schemaError(op, `lease ${JSON.stringify([tok, holder, ttl])}`);
    }
    return { name, holder, token: this.token(op, tok), expiresInMs: Math.max(0, ttl) };
  }

  async acquire(name: string, holder: string, ttlMs: number): Promise<AcquireResult> {
    validateAcquire(name, holder, ttlMs);
    const k = this.keys(name);
    const r = await this.run(
      "acquire",
      "acquire",
      [k.lease, k.token, k.boot],
      [holder, String(ttlMs), k.events, this.restartGuard ? String(ttlMs) : "0"],
    );
    if (typeof r === "string") {
      this.guarded = false;
      return { acquired: true, lease: { name, holder, token: this.token("acquire", r) } };
    }
    if (!Array.isArray(r)) throw this.schemaError("acquire", JSON.stringify(r));
    if (r[0] === 2) {
      if (typeof r[1] !== "number") throw this.schemaError("acquire", JSON.stringify(r));
      this.guardRefused(name, r[1]);
      return { acquired: false, current: null, retryInMs: r[1] };
    }
    return { acquired: false, current: this.info("acquire", name, r[1], r[2], r[3]) };
  }

  /** Logs once per restart that the restart guard refuses new leases. */
  private guardRefused(name: string, waitMs: number): void {
    if (this.guarded) return;
    this.guarded = true;
    this.logger.warn("redis restarted less than one ttl ago: no new lease until then", {
      lease: name,
      waitMs,
    });
  }

  /** Every item in one ACQUIRE_MANY script call (one call per hash slot on a Cluster): see acquire-many.ts. */
  acquireMany(items: readonly AcquireItem[]): Promise<AcquireResult[]> {
    return acquireMany(
      {
        cluster: typeof this.client.nodes === "function",
        guardMs: (ttlMs) => (this.restartGuard ? ttlMs : 0),
        keys: (name) => this.keys(name),
        run: (keys, args) => this.run("acquireMany", "acquireMany", keys, args),
        token: (v) => this.token("acquireMany", v),
        info: (name, tok, holder, ttl) => this.info("acquireMany", name, tok, holder, ttl),
        guarded: (name, waitMs) => this.guardRefused(name, waitMs),
        granted: () => {
          this.guarded = false;
        },
        schemaError: (what) => this.schemaError("acquireMany", what),
      },
      items,
    );
  }

  async renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    validateRenew(lease, ttlMs);
    const k = this.keys(lease.name);
    const r = await this.run(
      "renew",
      "renew",
      [k.lease, k.boot],
      [
        lease.holder,
        lease.token.toString(),
        String(ttlMs),
        this.restartGuard ? String(ttlMs) : "0",
      ],
    );
    if (!Array.isArray(r)) throw this.schemaError("renew", JSON.stringify(r));
    if (r[0] === 1) return { renewed: true };
    if (r.length === 1) return { renewed: false, current: null };
    return { renewed: false, current: this.info("renew", lease.name, r[1], r[2], r[3]) };
  }

  /** Every item in one RENEW_MANY script call (one call per hash slot on a Cluster): see renew-many.ts. */
  renewMany(items: readonly RenewItem[]): Promise<RenewResult[]> {
    return renewMany(
      {
        cluster: typeof this.client.nodes === "function",
        guardMs: (ttlMs) => (this.restartGuard ? ttlMs : 0),
        // Only the two keys RENEW_MANY uses (not all five of keys()): built per lease per renewal.
        keys: (name) => {
          const t = this.tag(name);
          return { lease: `${t}:lease`, boot: `${t}:boot` };
        },
        run: (keys, args) => this.run("renewMany", "renewMany", keys, args),
        info: (name, tok, holder, ttl) => this.info("renewMany", name, tok, holder, ttl),
        schemaError: (what) => this.schemaError("renewMany", what),
      },
      items,
    );
  }

  async release(lease: LeaseRef): Promise<boolean> {
    validateLeaseRef(lease);
    const t = this.tag(lease.name);
    const r = await this.run(
      "release",
      "release",
      [`${t}:lease`],
      [`t1:${lease.token}:${lease.holder}`, `${t}:events`],
    );
    return r === 1;
  }

  /** Every item in one RELEASE_MANY script call (one call per hash slot on a Cluster): see release-many.ts. */
  releaseMany(leases: readonly LeaseRef[]): Promise<boolean[]> {
    return releaseMany(
      {
        cluster: typeof this.client.nodes === "function",
        keys: (name) => this.keys(name),
        run: (keys, args) => this.run("releaseMany", "releaseMany", keys, args),
        schemaError: (what) => this.schemaError("releaseMany", what),
      },
      leases,
    );
  }

  async read(name: string): Promise<LeaseInfo | null> {
    validateLeaseName(name);
    return this.readWith(name, this.client);
  }

  private async readWith(name: string, client: RedisClientLike): Promise<LeaseInfo | null> {
    const r = await this.run("read", "read", [this.keys(name).lease], [], client);
    if (r === null || r === undefined) return null;
    if (!Array.isArray(r)) throw this.schemaError("read", JSON.stringify(r));
    return this.info("read", name, r[0], r[1], r[2]);
  }

  /**
   * Every live lease under this store's prefix: SCAN for lease keys (on every
   * master in Cluster), then the read script for each. Not one atomic snapshot.
   */
  async list(opts: ListOptions = {}): Promise<LeaseInfo[]> {
    this.check("list");
    const nodes =
      typeof this.client.nodes === "function" ? this.client.nodes("master") : [this.client];
    const pattern = `${this.prefix}{*}:lease`;
    const head = `${this.prefix}{`;
    const names = new Set<string>();
    try {
      for (const node of nodes) {
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 500);
          cursor = next;
          for (const key of keys) {
            if (!key.startsWith(head) || !key.endsWith("}:lease")) continue;
            const name = key.slice(head.length, -"}:lease".length);
            if (name.includes("{") || name.includes("}")) continue;
            if (LEASE_NAME_PATTERN.test(name)) names.add(name);
            else reportInvalid(opts, this.logger, name, `key ${key}: not a valid lease name`);
          }
        } while (cursor !== "0");
      }
    } catch (e) {
      throw this.wrap("list", e);
    }
    // The leases themselves: one READ_MANY script per LIST_READ_BATCH names (per hash slot on
    // a Cluster), not one read per lease.
    const sorted = [...names].sort();
    const infos: (LeaseInfo | null)[] = [];
    for (let i = 0; i < sorted.length; i += LIST_READ_BATCH) {
      const chunk = sorted.slice(i, i + LIST_READ_BATCH);
      const got = await perSlot(
        typeof this.client.nodes === "function",
        chunk,
        (n) => this.keys(n).lease,
        async (batch) => {
          const r = await this.run(
            "list",
            "readMany",
            batch.map((n) => this.keys(n).lease),
            [],
          );
          if (!Array.isArray(r) || r.length !== batch.length)
            throw this.schemaError("list", `readMany: ${JSON.stringify(r)}`);
          return r;
        },
        (n, r): LeaseInfo | null => {
          if (!Array.isArray(r)) throw this.schemaError("list", JSON.stringify(r));
          // One bad key is reported, not a reason to hide every other lease.
          if (r[0] === 2) {
            reportInvalid(opts, this.logger, n, schemaError("redis", "list", String(r[1])));
            return null;
          }
          if (r[0] !== 1) return null;
          try {
            return this.info("list", n, r[1], r[2], r[3]);
          } catch (e) {
            reportInvalid(opts, this.logger, n, e);
            return null;
          }
        },
      );
      infos.push(...got);
    }
    return infos.filter((i): i is LeaseInfo => i !== null);
  }

  async forceRelease(name: string): Promise<boolean> {
    validateLeaseName(name);
    const k = this.keys(name);
    return (await this.run("forceRelease", "forceRelease", [k.lease], [k.events])) === 1;
  }

  async putFenced(
    lease: Pick<LeaseRef, "name" | "holder" | "token">,
    key: string,
    value: string,
    opts?: { expect?: string | null },
  ): Promise<FencedPutResult> {
    validateFencedPut(lease, key, value, opts);
    const k = this.keys(lease.name);
    const mode =
      opts === undefined || opts.expect === undefined
        ? ""
        : opts.expect === null
          ? "null"
          : "value";
    const r = await this.run(
      "putFenced",
      "putFenced",
      [k.token, k.data],
      [lease.token.toString(), key, value, mode, opts?.expect ?? ""],
    );
    if (r === "ok") return { ok: true };
    if (r === "fenced" || r === "conflict") return { ok: false, reason: r };
    throw this.schemaError("putFenced", JSON.stringify(r));
  }

  async getFenced(name: string, key: string): Promise<FencedValue | null> {
    validateFencedGet(name, key);
    const r = await this.run("getFenced", "getFenced", [this.keys(name).data], [key]);
    if (r === null || r === undefined) return null;
    if (!Array.isArray(r) || typeof r[1] !== "string") {
      throw this.schemaError("getFenced", JSON.stringify(r));
    }
    return { value: r[1], token: this.token("getFenced", r[0]) };
  }

  /**
   * Token-checked write on your own key: in one script, `SET key value` only
   * if `term` still holds the lease (the lease is live and its token is
   * `term.token`). Otherwise nothing is written and a {@link FencedError} is
   * thrown (its `currentToken` is the live term's token, or null when nobody
   * holds the lease). In Redis Cluster `key` must share the lease's hash tag
   * (`{name}`); build it with {@link taggedKey}.
   */
  async fencedSet(
    term: Pick<LeaseRef, "name" | "token">,
    key: string,
    value: string,
    opts: FencedSetOptions = {},
  ): Promise<void> {
    validateLeaseName(term.name, "term.name");
    validateField("key", key);
    if (typeof value !== "string") throw new ConfigError("value", "must be a string");
    let px = "";
    if (opts.pxMs !== undefined) px = String(validateTtl(opts.pxMs, "pxMs"));
    await this.fencedWrite("fencedSet", term, key, ["set", value, px]);
  }

  /** Like {@link fencedSet}, for one field of a hash: `HSET key field value`. */
  async fencedHset(
    term: Pick<LeaseRef, "name" | "token">,
    key: string,
    field: string,
    value: string,
  ): Promise<void> {
    validateLeaseName(term.name, "term.name");
    validateField("key", key);
    validateField("field", field);
    if (typeof value !== "string") throw new ConfigError("value", "must be a string");
    await this.fencedWrite("fencedHset", term, key, ["hset", field, value]);
  }

  private async fencedWrite(
    op: string,
    term: Pick<LeaseRef, "name" | "token">,
    key: string,
    args: string[],
  ): Promise<void> {
    const r = await this.run(
      op,
      "fencedWrite",
      [this.keys(term.name).lease, key],
      [term.token.toString(), ...args],
    );
    if (!Array.isArray(r)) throw this.schemaError(op, JSON.stringify(r));
    if (r[0] === 1) return;
    const cur = r[1] === "" ? null : this.token(op, r[1]);
    throw new FencedError(term.name, term.token, cur);
  }

  /**
   * Calls `onChange` on `released` / `acquired` events of lease `name`. All
   * watches share one subscriber connection, created on the first watch and
   * closed by `close()`. After the subscriber reconnects, every watcher gets a
   * `changed` event (events may have been missed meanwhile).
   */
  async watch(name: string, onChange: WatchCallback): Promise<Unwatch> {
    validateLeaseName(name);
    this.check("watch");
    if (!this.makeSubscriber) {
      throw new StoreError("tenure redis: watch failed: no subscriber connection available", {
        transient: false,
        kind: "config",
      });
    }
    await this.ensureSubscriber();
    const channel = this.keys(name).events;
    if (this.watchers.add(channel, onChange)) {
      try {
        await this.subs.subscribe(channel);
      } catch (e) {
        this.watchers.delete(channel, onChange);
        throw toRedisStoreError("watch", e, this.secrets);
      }
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      if (this.watchers.delete(channel, onChange)) {
        if (!this.closed && this.sub) {
          await this.subs.unsubscribe(channel).catch((e: unknown) => {
            this.logger.debug("redis unsubscribe failed", { lease: name, err: e });
          });
        }
      }
    };
  }

  private ensureSubscriber(): Promise<void> {
    if (this.subReady) return this.subReady;
    const sub = this.makeSubscriber!();
    this.sub = sub;
    let wasDown = false;
    sub.on("message", (...args: unknown[]) => this.deliver(String(args[0]), String(args[1])));
    sub.on("error", ((e: unknown) => {
      this.logger.debug("redis subscriber error", { err: e });
    }) as (...args: unknown[]) => void);
    sub.on("close", () => {
      wasDown = true;
    });
    sub.on("ready", () => {
      if (!wasDown) return;
      wasDown = false;
      this.logger.info("redis subscriber reconnected", {});
      const channels = [...this.watchers.keys()];
      if (channels.length > 0) {
        SubscriptionBatcher.send(sub, "subscribe", channels).catch((e: unknown) => {
          // The connection dropped again; the next "ready" subscribes again.
          this.logger.debug("redis resubscribe failed", { err: e });
        });
      }
      // Anything may have happened while we were away: let watchers re-check.
      for (const channel of this.watchers.keys()) this.deliver(channel, "changed");
    });
    this.subReady = Promise.resolve();
    return this.subReady;
  }

  private deliver(channel: string, message: string): void {
    if (!this.watchers.has(channel)) return;
    const head = `${this.prefix}{`;
    const name = channel.slice(head.length, -"}:events".length);
    const type: LeaseEvent["type"] =
      message === "released" ? "released" : message === "acquired" ? "acquired" : "changed";
    this.watchers.emit(channel, { name, type });
  }

  /** `await using store = …`: closes the store at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    if (typeof this.client.off === "function") {
      this.client.off("error", this.onClientError as (...args: unknown[]) => void);
      this.client.off("ready", this.onClientReady);
    }
    const sub = this.sub;
    this.sub = undefined;
    await Promise.allSettled([
      sub ? quit(sub) : Promise.resolve(),
      this.closeClient ? this.closeClient() : Promise.resolve(),
    ]);
  }
}

function validateField(field: string, v: unknown): void {
  if (typeof v !== "string" || v.length === 0) {
    throw new ConfigError(field, "must be a non-empty string");
  }
}

/** QUIT when connected (graceful), else drop the socket at once so close() never waits on a reconnect. */
async function quit(c: {
  quit(): Promise<unknown>;
  disconnect?(): void;
  status?: string;
}): Promise<void> {
  if (c.status !== undefined && c.status !== "ready" && c.disconnect) {
    c.disconnect();
    return;
  }
  try {
    await c.quit();
  } catch {
    c.disconnect?.();
  }
}

function defaultClose(client: RedisClientLike): () => Promise<void> {
  return async () => {
    const c = client as unknown as { quit?(): Promise<unknown>; disconnect?(): void };
    if (typeof c.quit === "function") await quit(c as { quit(): Promise<unknown> });
  };
}
