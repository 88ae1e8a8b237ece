/**
 * `renewMany` of the etcd store: one round trip per batch. Every lease key a
 * store writes is attached to its shared session lease (one per TTL in
 * seconds), so renewing N terms is ONE keep-alive of that session (sent after
 * the batch began, coalesced with any other renewal's) plus ONE read-only
 * transaction that reads every key of the batch, both in flight at once. The
 * read must not hold a range per key: etcd refuses a transaction of more than
 * `--max-txn-ops` (default 128) operations. It holds at most
 * {@link SPANS_PER_TXN} ranges, each over a span of consecutive keys of the
 * batch (sorted), bounded by a `limit`; a span that comes back truncated
 * (other keys between ours) is read again key by key (a second round trip,
 * only for that span). An item renews only when the read shows its term
 * (create revision = token, value = holder) on the very session whose
 * keep-alive found it alive: the argument of SessionPool.live() in pool.ts, per
 * item. Every other case (no live session of that TTL yet, the key on another
 * lease, the session gone) is left to `renew` for that item alone.
 */
import type { IKeyValue, IRangeResponse, IRequestOp } from "etcd3";
import type { LeaseInfo, LeaseRef, RenewItem, RenewResult } from "../../store/types.js";
import { validateRenewItems } from "../../store/validate.js";
import type { SessionLease } from "./session.js";
import { monotonicMs } from "./session.js";

/** Most ranges in one read transaction (etcd's default `--max-txn-ops` is 128). */
export const SPANS_PER_TXN = 100;
/** A span's range may return this many keys more than it holds of ours before it counts as truncated. */
const SPAN_SLACK = 64;

type CallOptions = { deadline: number };

/** What the batch needs from the store (store.ts builds it). */
export interface EtcdRenewManyContext {
  /** Runs `fn` under one call deadline, classifying failures. */
  readonly run: <T>(fn: (o: CallOptions) => Promise<T>) => Promise<T>;
  /** The lease key of a name. */
  readonly key: (name: string) => string;
  /**
   * Starts one item: "over" when the term is this store's and past its ttl
   * (the store ends it; the item is not renewed), else a function to call when
   * the item is done (the sweeper leaves the term alone meanwhile).
   */
  readonly begin: (lease: LeaseRef, since: number) => "over" | (() => void);
  readonly liveSession: (ttlSec: number) => SessionLease | undefined;
  readonly ttlSeconds: (ttlMs: number) => number;
  /** A read-only transaction of these ranges. */
  readonly read: (ops: IRequestOp[], o: CallOptions) => Promise<IRangeResponse[]>;
  readonly info: (name: string, kv: IKeyValue, o: CallOptions) => Promise<LeaseInfo>;
  readonly forget: (name: string, token: bigint) => void;
  readonly hold: (lease: LeaseRef, ttlMs: number, since: number) => void;
  /** The single renewal, for an item the batch cannot judge in its one round trip. */
  readonly renew: (lease: LeaseRef, ttlMs: number) => Promise<RenewResult>;
}

export async function renewMany(
  ctx: EtcdRenewManyContext,
  items: readonly RenewItem[],
): Promise<RenewResult[]> {
  validateRenewItems(items);
  if (items.length === 0) return [];
  const since = monotonicMs();
  const out: RenewResult[] = new Array(items.length);
  const dones: (() => void)[] = [];
  const slow: number[] = [];
  try {
    const fast: { i: number; session: SessionLease }[] = [];
    for (const [i, { lease, ttlMs }] of items.entries()) {
      const b = ctx.begin(lease, since);
      if (b === "over") {
        out[i] = { renewed: false, current: null };
        continue;
      }
      dones.push(b);
      const session = ctx.liveSession(ctx.ttlSeconds(ttlMs));
      if (session) fast.push({ i, session });
      else slow.push(i);
    }
    if (fast.length > 0) {
      await ctx.run(async (o) => {
        // The keep-alives (one per session) go out beside the read.
        const alive = new Map<SessionLease, Promise<number>>();
        for (const { session } of fast) {
          if (!alive.has(session)) {
            const p = session.refresh(since);
            p.catch(() => {});
            alive.set(session, p);
          }
        }
        const kvs = await readKeys(
          ctx,
          fast.map(({ i }) => ctx.key(items[i]!.lease.name)),
          o,
        );
        const ttls = new Map<SessionLease, number>();
        for (const [s, p] of alive) ttls.set(s, await p);
        await Promise.all(
          fast.map(async ({ i, session }, j) => {
            const { lease, ttlMs } = items[i]!;
            const kv = kvs[j] ?? null;
            if (!kv) {
              ctx.forget(lease.name, lease.token);
              out[i] = { renewed: false, current: null };
              return;
            }
            if (
              BigInt(kv.create_revision) !== lease.token ||
              kv.value.toString("utf8") !== lease.holder
            ) {
              ctx.forget(lease.name, lease.token);
              out[i] = { renewed: false, current: await ctx.info(lease.name, kv, o) };
              return;
            }
            if (kv.lease !== session.id || (ttls.get(session) ?? 0) <= 0) {
              slow.push(i); // another lease, or the session is gone: judged alone
              return;
            }
            ctx.hold(lease, ttlMs, since);
            out[i] = { renewed: true };
          }),
        );
      });
    }
  } finally {
    for (const d of dones) d();
  }
  if (slow.length > 0) {
    // Items of one name one after the other, in batch order (two moves of one
    // key onto sessions of different TTLs must land in order); names at once.
    const chains = new Map<string, Promise<void>>();
    for (const i of slow.sort((a, b) => a - b)) {
      const { lease, ttlMs } = items[i]!;
      const prev = chains.get(lease.name) ?? Promise.resolve();
      chains.set(
        lease.name,
        prev.then(async () => {
          out[i] = await ctx.renew(lease, ttlMs);
        }),
      );
    }
    await Promise.all(chains.values());
  }
  return out;
}

/**
 * The key-values of `keys` (null where absent), in order: the distinct keys
 * sorted into at most {@link SPANS_PER_TXN} spans per read transaction (one
 * transaction up to 100 spans; a batch of 1 000 is 100 spans of 10 keys).
 */
async function readKeys(
  ctx: EtcdRenewManyContext,
  keys: readonly string[],
  o: CallOptions,
): Promise<(IKeyValue | null)[]> {
  const sorted = [...new Set(keys)].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const per = Math.max(1, Math.ceil(sorted.length / SPANS_PER_TXN));
  const spans: string[][] = [];
  for (let i = 0; i < sorted.length; i += per) spans.push(sorted.slice(i, i + per));
  const found = new Map<string, IKeyValue>();
  const again: string[] = [];
  const txns: string[][][] = [];
  for (let i = 0; i < spans.length; i += SPANS_PER_TXN)
    txns.push(spans.slice(i, i + SPANS_PER_TXN));
  await Promise.all(
    txns.map(async (txn) => {
      const ops: IRequestOp[] = txn.map((span) =>
        span.length === 1
          ? { request_range: { key: Buffer.from(span[0]!) } }
          : {
              request_range: {
                key: Buffer.from(span[0]!),
                range_end: Buffer.concat([Buffer.from(span[span.length - 1]!), Buffer.from([0])]),
                limit: span.length + SPAN_SLACK,
              },
            },
      );
      const rs = await ctx.read(ops, o);
      for (const [j, span] of txn.entries()) {
        const r = rs[j];
        const want = new Set(span);
        for (const kv of r?.kvs ?? []) {
          const k = kv.key.toString("utf8");
          if (want.has(k)) found.set(k, kv);
        }
        if (r?.more) for (const k of span) if (!found.has(k)) again.push(k);
      }
    }),
  );
  if (again.length > 0) {
    // Truncated spans (many other keys between ours): their keys one range each.
    for (let i = 0; i < again.length; i += SPANS_PER_TXN) {
      const chunk = again.slice(i, i + SPANS_PER_TXN);
      const rs = await ctx.read(
        chunk.map((k) => ({ request_range: { key: Buffer.from(k) } })),
        o,
      );
      for (const [j, k] of chunk.entries()) {
        const kv = rs[j]?.kvs[0];
        if (kv) found.set(k, kv);
      }
    }
  }
  return keys.map((k) => found.get(k) ?? null);
}
