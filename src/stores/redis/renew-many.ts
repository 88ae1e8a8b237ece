/**
 * `renewMany` of the Redis store: every item of a batch in one RENEW_MANY
 * script call (one EVALSHA). In Redis Cluster a batch is split per hash slot
 * (slots.ts); with today's key layout every lease is its own hash tag (`{name}`), so on a
 * Cluster that is about one call per lease (see docs/stores/redis.md).
 */

import type { LeaseInfo, RenewItem, RenewResult } from "../../store/types.js";
import { validateRenewItems } from "../../store/validate.js";
import { perSlot } from "./slots.js";

/** What the batch needs from the store. */
export interface RedisRenewManyContext {
  /** True for an ioredis Cluster: a batch is split per hash slot. */
  readonly cluster: boolean;
  /** The restart guard's window for an item (its ttl), or 0 when the guard is off. */
  readonly guardMs: (ttlMs: number) => number;
  /** Lease and boot keys of a lease. */
  readonly keys: (name: string) => { readonly lease: string; readonly boot: string };
  /** Runs RENEW_MANY with these keys and args (classified StoreError on failure). */
  readonly run: (keys: string[], args: string[]) => Promise<unknown>;
  /** Parses a `{0, token, holder, pttl}` reply into the live holder. */
  readonly info: (name: string, token: unknown, holder: unknown, pttl: unknown) => LeaseInfo;
  /** The error for a reply that is not what the script returns. */
  readonly schemaError: (what: string) => Error;
}

const RENEWED: RenewResult = Object.freeze({ renewed: true });

export async function renewMany(
  ctx: RedisRenewManyContext,
  items: readonly RenewItem[],
): Promise<RenewResult[]> {
  validateRenewItems(items);
  if (items.length === 0) return [];
  return perSlot(
    ctx.cluster,
    items,
    (it) => ctx.keys(it.lease.name).lease,
    (batch) => call(ctx, batch),
    (it, r) => parse(ctx, it, r),
  );
}

/** One script call for these items; the replies, one per item. */
async function call(ctx: RedisRenewManyContext, items: readonly RenewItem[]): Promise<unknown[]> {
  const keys: string[] = [];
  // The guard's window is the ttl (as in RENEW); one batch carries one: the longest.
  let guard = 0;
  const args: string[] = [""];
  for (const { lease, ttlMs } of items) {
    const k = ctx.keys(lease.name);
    keys.push(k.lease, k.boot);
    args.push(lease.holder, lease.token.toString(), String(ttlMs));
    guard = Math.max(guard, ctx.guardMs(ttlMs));
  }
  args[0] = String(guard);
  const r = await ctx.run(keys, args);
  if (!Array.isArray(r) || r.length !== items.length) {
    throw ctx.schemaError(
      `renewMany: ${Array.isArray(r) ? `${r.length} replies` : "no array"} for ${items.length} items`,
    );
  }
  return r;
}

function parse(ctx: RedisRenewManyContext, item: RenewItem, r: unknown): RenewResult {
  if (!Array.isArray(r)) throw ctx.schemaError(`renewMany: ${JSON.stringify(r)}`);
  if (r[0] === 1) return RENEWED;
  if (r.length === 1) return { renewed: false, current: null };
  return { renewed: false, current: ctx.info(item.lease.name, r[1], r[2], r[3]) };
}
