/**
 * `releaseMany` of the Redis store: every item of a batch in one RELEASE_MANY
 * script call (one EVALSHA), each released lease publishing its own
 * `released`. In Redis Cluster a batch is split per hash slot (slots.ts).
 */

import type { LeaseRef } from "../../store/types.js";
import { validateReleaseItems } from "../../store/validate.js";
import { perSlot } from "./slots.js";

/** What the batch needs from the store. */
export interface RedisReleaseManyContext {
  /** True for an ioredis Cluster: a batch is split per hash slot. */
  readonly cluster: boolean;
  /** Lease key and event channel of a lease. */
  readonly keys: (name: string) => { readonly lease: string; readonly events: string };
  /** Runs RELEASE_MANY with these keys and args (classified StoreError on failure). */
  readonly run: (keys: string[], args: string[]) => Promise<unknown>;
  /** The error for a reply that is not what the script returns. */
  readonly schemaError: (what: string) => Error;
}

export async function releaseMany(
  ctx: RedisReleaseManyContext,
  leases: readonly LeaseRef[],
): Promise<boolean[]> {
  validateReleaseItems(leases);
  if (leases.length === 0) return [];
  return perSlot(
    ctx.cluster,
    leases,
    (l) => ctx.keys(l.name).lease,
    (batch) => call(ctx, batch),
    (_l, r) => {
      if (r !== 0 && r !== 1) throw ctx.schemaError(`releaseMany: ${JSON.stringify(r)}`);
      return r === 1;
    },
  );
}

/** One script call for these items; the replies, one per item. */
async function call(ctx: RedisReleaseManyContext, leases: readonly LeaseRef[]): Promise<unknown[]> {
  const keys: string[] = [];
  const args: string[] = [];
  for (const l of leases) {
    const k = ctx.keys(l.name);
    keys.push(k.lease);
    args.push(l.holder, l.token.toString(), k.events);
  }
  const r = await ctx.run(keys, args);
  if (!Array.isArray(r) || r.length !== leases.length) {
    throw ctx.schemaError(
      `releaseMany: ${Array.isArray(r) ? `${r.length} replies` : "no array"} for ${leases.length} items`,
    );
  }
  return r;
}
