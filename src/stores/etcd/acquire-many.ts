/**
 * `acquireMany` of the etcd store: a batch of acquires in one transaction of
 * nested transactions, one per item (`Create == 0` → put the key on the
 * session lease of its ttl, else read it), so each item is judged alone, as
 * `acquire`'s first transaction judges it. etcd refuses a transaction of more
 * than `--max-txn-ops` (default 128) operations at any level, so a batch goes
 * as transactions of at most {@link ITEMS_PER_TXN} items, all in flight at
 * once. The session keep-alives go out beside them, as in `acquire`. One
 * transaction cannot touch one key twice, so a batch naming one lease twice
 * goes one occurrence after the other (`roundsByName`).
 *
 * A key the item's own holder holds (an earlier acquire of it answered
 * after its caller gave up) is that holder's live term: it goes on, its token
 * answered. When the key is on the session whose keep-alive, sent beside the
 * transaction, found it alive, the transaction's read renews it as a
 * `renewMany` read would (renew-many.ts), in the same round trip; the
 * sweeper leaves the batch's names alone meanwhile. Items the batch cannot
 * judge in its round trip go to `acquire` alone: such a key on another lease
 * (`acquire` renews it and moves it onto the session), and every item of a
 * transaction that found its session lease gone.
 */
import type { IKeyValue, IRequestOp, ITxnResponse } from "etcd3";
import type { AcquireItem, AcquireResult, LeaseInfo, LeaseRef } from "../../store/types.js";
import { roundsByName, validateAcquireItems } from "../../store/validate.js";
import type { CallOptions } from "./pool.js";
import type { SessionLease } from "./session.js";
import { monotonicMs } from "./session.js";

/** Most items (nested transactions) in one transaction, under etcd's default `--max-txn-ops` of 128. */
export const ITEMS_PER_TXN = 100;

/** What the batch needs from the store (store.ts builds it). */
export interface EtcdAcquireManyContext {
  /** Runs `fn` under one call deadline, classifying failures. */
  readonly run: <T>(fn: (o: CallOptions) => Promise<T>) => Promise<T>;
  /** The lease key of a name. */
  readonly key: (name: string) => Buffer;
  /** Ends a term of this store of `name` that is past its ttl, before taking the name. */
  readonly settle: (name: string) => Promise<void>;
  readonly session: (ttlSec: number, o: CallOptions) => Promise<SessionLease>;
  readonly ttlSeconds: (ttlMs: number) => number;
  /** One transaction with these success operations and no compare. */
  readonly txn: (ops: IRequestOp[], o: CallOptions) => Promise<ITxnResponse>;
  /** True when `e` says the session lease is gone (LEASE_NOT_FOUND). */
  readonly leaseGone: (e: unknown) => boolean;
  readonly info: (
    name: string,
    kv: IKeyValue,
    o: CallOptions,
    ttlCache: Map<string, Promise<number | null>>,
  ) => Promise<LeaseInfo>;
  readonly hold: (lease: LeaseRef, ttlMs: number, since: number) => void;
  /**
   * A call that may renew a term of `name` begins: the sweeper leaves that
   * name alone until the returned function is called.
   */
  readonly begin: (name: string) => () => void;
  /**
   * True when `lease` is a term this store recorded and is not ending. Every
   * key the store puts on its sessions is recorded until it is released or
   * ended; one on a session of its own but not recorded is being deleted.
   */
  readonly recorded: (lease: LeaseRef) => boolean;
  /** The single acquire, for an item the batch cannot judge in its round trip. */
  readonly acquire: (name: string, holder: string, ttlMs: number) => Promise<AcquireResult>;
}

export async function acquireMany(
  ctx: EtcdAcquireManyContext,
  items: readonly AcquireItem[],
): Promise<AcquireResult[]> {
  validateAcquireItems(items);
  if (items.length === 0) return [];
  const out: AcquireResult[] = new Array(items.length);
  for (const round of roundsByName(items)) {
    const chunks: number[][] = [];
    for (let k = 0; k < round.length; k += ITEMS_PER_TXN)
      chunks.push(round.slice(k, k + ITEMS_PER_TXN));
    await Promise.all(chunks.map((idx) => acquireChunk(ctx, items, idx, out)));
  }
  return out;
}

/** One transaction for the items `idx` (distinct names); answers go to `out`. */
async function acquireChunk(
  ctx: EtcdAcquireManyContext,
  items: readonly AcquireItem[],
  idx: readonly number[],
  out: AcquireResult[],
): Promise<void> {
  const slow: number[] = [];
  await Promise.all(idx.map((i) => ctx.settle(items[i]!.name)));
  // Counted from after the settle: a term is never recorded already past its ttl.
  const since = monotonicMs();
  // An item may find its holder's own term and renew it: no sweep of the batch's names meanwhile.
  const dones = idx.map((i) => ctx.begin(items[i]!.name));
  try {
    await ctx.run((o) => judgeChunk(ctx, items, idx, since, o, out, slow));
  } finally {
    for (const done of dones) done();
  }
  await Promise.all(
    slow.map(async (i) => {
      const { name, holder, ttlMs } = items[i]!;
      out[i] = await ctx.acquire(name, holder, ttlMs);
    }),
  );
}

/**
 * The round trip of a chunk begun at `since`: answers go to `out`, items
 * it cannot judge to `slow`.
 */
async function judgeChunk(
  ctx: EtcdAcquireManyContext,
  items: readonly AcquireItem[],
  idx: readonly number[],
  since: number,
  o: CallOptions,
  out: AcquireResult[],
  slow: number[],
): Promise<void> {
  const sessions = new Map<number, SessionLease>();
  for (const i of idx) {
    const sec = ctx.ttlSeconds(items[i]!.ttlMs);
    if (!sessions.has(sec)) sessions.set(sec, await ctx.session(sec, o));
  }
  // The keep-alives run beside the transaction: each session (and so
  // every new key on it) then lives at least its ttl from `since`.
  const alive = new Map<SessionLease, Promise<number>>();
  for (const s of sessions.values()) {
    const p = s.refresh(since);
    p.catch(() => {});
    alive.set(s, p);
  }
  const sessionOf = (i: number) => sessions.get(ctx.ttlSeconds(items[i]!.ttlMs))!;
  const ops: IRequestOp[] = idx.map((i) => {
    const key = ctx.key(items[i]!.name);
    return {
      request_txn: {
        compare: [{ key, target: "Create", result: "Equal", create_revision: 0 }],
        success: [
          {
            request_put: {
              key,
              value: Buffer.from(items[i]!.holder, "utf8"),
              lease: sessionOf(i).id,
            },
          },
        ],
        failure: [{ request_range: { key } }],
      },
    };
  });
  let r: ITxnResponse;
  try {
    r = await ctx.txn(ops, o);
  } catch (e) {
    if (!ctx.leaseGone(e)) throw e;
    // A session expired between its use and its keep-alive: nothing was
    // written; each item tries alone, on a new session.
    for (const s of sessions.values()) s.lost = true;
    slow.push(...idx);
    return;
  }
  // Every put of one transaction has its revision: the new keys' create revision.
  const token = BigInt(r.header.revision);
  const ttlCache = new Map<string, Promise<number | null>>();
  await Promise.all(
    idx.map(async (i, j) => {
      const { name, holder, ttlMs } = items[i]!;
      const sub = r.responses[j]?.response_txn;
      if (sub?.succeeded) {
        const s = sessionOf(i);
        if ((await alive.get(s)!) > 0) {
          const lease = { name, holder, token };
          ctx.hold(lease, ttlMs, since);
          out[i] = { acquired: true, lease };
        } else {
          // The session expired under the new key: the key is gone with it.
          s.lost = true;
          slow.push(i);
        }
        return;
      }
      const cur = sub?.responses[0]?.response_range.kvs[0];
      if (!cur) out[i] = { acquired: false, current: null };
      else if (cur.value.toString("utf8") === holder) {
        // The holder's own term: renewed by this round trip when it is a term of this store on
        // the session the keep-alive found alive, else by `acquire` alone.
        const s = sessionOf(i);
        const lease = { name, holder, token: BigInt(cur.create_revision) };
        if (cur.lease === s.id && (await alive.get(s)!) > 0 && ctx.recorded(lease)) {
          ctx.hold(lease, ttlMs, since);
          out[i] = { acquired: true, lease };
        } else slow.push(i);
      } else out[i] = { acquired: false, current: await ctx.info(name, cur, o, ttlCache) };
    }),
  );
}
