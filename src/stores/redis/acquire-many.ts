/**
 * `acquireMany` of the Redis store: every item of a batch in one ACQUIRE_MANY
 * script call (one EVALSHA), each item judged as ACQUIRE judges it. In Redis
 * Cluster a batch is split per hash slot and the calls go out together
 * (slots.ts, shared with renewMany).
 */
import type { AcquireItem, AcquireResult, LeaseInfo } from "../../store/types.js";
import { validateAcquireItems } from "../../store/validate.js";
import { perSlot } from "./slots.js";

/** What the batch needs from the store. */
export interface RedisAcquireManyContext {
  /** True for an ioredis Cluster: a batch is split per hash slot. */
  readonly cluster: boolean;
  /** The restart guard's window for an item (its ttl), or 0 when the guard is off. */
  readonly guardMs: (ttlMs: number) => number;
  /** Lease, token counter, boot keys and event channel of a lease. */
  readonly keys: (name: string) => {
    readonly lease: string;
    readonly token: string;
    readonly boot: string;
    readonly events: string;
  };
  /** Runs ACQUIRE_MANY with these keys and args (classified StoreError on failure). */
  readonly run: (keys: string[], args: string[]) => Promise<unknown>;
  /** Parses a token reply. */
  readonly token: (v: unknown) => bigint;
  /** Parses a `{0, token, holder, pttl}` reply into the live holder. */
  readonly info: (name: string, token: unknown, holder: unknown, pttl: unknown) => LeaseInfo;
  /** An item was refused by the restart guard (the store logs it once per restart). */
  readonly guarded: (name: string, waitMs: number) => void;
  /** An item was acquired (the restart guard is over). */
  readonly granted: () => void;
  /** The error for a reply that is not what the script returns. */
  readonly schemaError: (what: string) => Error;
}

export async function acquireMany(
  ctx: RedisAcquireManyContext,
  items: readonly AcquireItem[],
): Promise<AcquireResult[]> {
  validateAcquireItems(items);
  if (items.length === 0) return [];
  return perSlot(
    ctx.cluster,
    items,
    (it) => ctx.keys(it.name).lease,
    (batch) => call(ctx, batch),
    (it, r) => parse(ctx, it, r),
  );
}

/** One script call for these items; the replies, one per item. */
async function call(
  ctx: RedisAcquireManyContext,
  items: readonly AcquireItem[],
): Promise<unknown[]> {
  const keys: string[] = [];
  const args: string[] = [];
  for (const { name, holder, ttlMs } of items) {
    const k = ctx.keys(name);
    keys.push(k.lease, k.token, k.boot);
    args.push(holder, String(ttlMs), k.events, String(ctx.guardMs(ttlMs)));
  }
  const r = await ctx.run(keys, args);
  if (!Array.isArray(r) || r.length !== items.length) {
    throw ctx.schemaError(
      `acquireMany: ${Array.isArray(r) ? `${r.length} replies` : "no array"} for ${items.length} items`,
    );
  }
  return r;
}

function parse(ctx: RedisAcquireManyContext, item: AcquireItem, r: unknown): AcquireResult {
  if (!Array.isArray(r)) throw ctx.schemaError(`acquireMany: ${JSON.stringify(r)}`);
  const { name, holder } = item;
  if (r[0] === 1) {
    ctx.granted();
    return { acquired: true, lease: { name, holder, token: ctx.token(r[1]) } };
  }
  if (r[0] === 2) {
    if (typeof r[1] !== "number") throw ctx.schemaError(`acquireMany: ${JSON.stringify(r)}`);
    ctx.guarded(name, r[1]);
    return { acquired: false, current: null, retryInMs: r[1] };
  }
  return { acquired: false, current: ctx.info(name, r[1], r[2], r[3]) };
}
