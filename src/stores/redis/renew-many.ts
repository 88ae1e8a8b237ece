/**
 * `renewMany` of the Redis store: every item of a batch in one RENEW_MANY
 * script call (one EVALSHA). In Redis Cluster the keys of one call must hash
 * to one slot, so a batch is split per slot and the calls go out together;
 * with today's key layout every lease is its own hash tag (`{name}`), so on a
 * Cluster that is about one call per lease (see docs/stores/redis.md).
 */

import type { LeaseInfo, RenewItem, RenewResult } from "../../store/types.js";
import { validateRenewItems } from "../../store/validate.js";

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

export async function renewMany(
  ctx: RedisRenewManyContext,
  items: readonly RenewItem[],
): Promise<RenewResult[]> {
  validateRenewItems(items);
  if (items.length === 0) return [];
  const groups = ctx.cluster ? bySlot(ctx, items) : [items.map((_, i) => i)];
  const out: RenewResult[] = new Array(items.length);
  await Promise.all(
    groups.map(async (idx) => {
      const replies = await call(
        ctx,
        idx.map((i) => items[i]!),
      );
      for (const [j, i] of idx.entries()) out[i] = parse(ctx, items[i]!, replies[j]);
    }),
  );
  return out;
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
  if (r[0] === 1) return { renewed: true };
  if (r.length === 1) return { renewed: false, current: null };
  return { renewed: false, current: ctx.info(item.lease.name, r[1], r[2], r[3]) };
}

/** Item indexes grouped by the Cluster hash slot of their lease key. */
function bySlot(ctx: RedisRenewManyContext, items: readonly RenewItem[]): number[][] {
  const groups = new Map<number, number[]>();
  for (const [i, it] of items.entries()) {
    const slot = hashSlot(ctx.keys(it.lease.name).lease);
    const g = groups.get(slot);
    if (g) g.push(i);
    else groups.set(slot, [i]);
  }
  return [...groups.values()];
}

/** Redis Cluster's hash slot of a key: CRC16 (XMODEM) of its hash tag (or the whole key), mod 16384. */
export function hashSlot(key: string): number {
  const buf = Buffer.from(key, "utf8");
  let start = 0;
  let end = buf.length;
  const open = buf.indexOf(0x7b); // {
  if (open >= 0) {
    const close = buf.indexOf(0x7d, open + 1); // }
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc ^= buf[i]! << 8;
    for (let b = 0; b < 8; b++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
