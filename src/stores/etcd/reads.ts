/**
 * Reads of lease keys and of etcd leases' remaining TTLs: reads requested in
 * the same turn of the event loop go out together as one read-only
 * transaction, and a TTL just fetched may be reused on acquire's failure path.
 */
import type { Etcd3, IKeyValue } from "etcd3";
import { idempotent } from "./members.js";
import type { CallOptions } from "./pool.js";
import { monotonicMs } from "./session.js";

/** Most range operations in one batched read transaction (etcd's default `--max-txn-ops` is 128). */
const READ_BATCH = 100;
/** How long an etcd lease's remaining TTL, once fetched, may be reused (aged) on acquire's failure path. */
const TTL_REUSE_MS = 1000;
/** Most remembered TTL answers (cleared when full; one entry per holder session seen). */
const TTL_SEEN_MAX = 1000;

export class Reads {
  private queue: {
    key: Buffer;
    resolve: (kv: IKeyValue | null) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private scheduled = false;
  /** Recent TTL answers by etcd lease ID: monotonic send time and remaining ms (null: gone). */
  private readonly ttlSeen = new Map<string, { sentAt: number; ms: number | null }>();

  constructor(
    private readonly client: Pick<Etcd3, "kv" | "leaseClient">,
    /** A fresh deadline for one batch. */
    private readonly deadline: () => CallOptions,
  ) {}

  /** Reads one key now, alone. */
  async one(key: Buffer, o: CallOptions): Promise<IKeyValue | null> {
    const r = await idempotent(() => this.client.kv.range({ key }, o));
    return r.kvs[0] ?? null;
  }

  /**
   * Reads one key. Reads requested in the same turn of the event loop go out
   * together as one read-only transaction (one revision, one round trip), so
   * the renewals of many terms cost a few calls, not one each.
   */
  batched(key: Buffer): Promise<IKeyValue | null> {
    return new Promise((resolve, reject) => {
      this.queue.push({ key, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const queue = this.queue;
    this.queue = [];
    for (let i = 0; i < queue.length; i += READ_BATCH) {
      const chunk = queue.slice(i, i + READ_BATCH);
      const o = this.deadline();
      const done =
        chunk.length === 1
          ? this.one(chunk[0]!.key, o).then((kv) => [kv])
          : idempotent(() =>
              this.client.kv.txn(
                {
                  compare: [],
                  success: chunk.map((c) => ({ request_range: { key: c.key } })),
                  failure: [],
                },
                o,
              ),
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
  async remainingMs(leaseId: string, o: CallOptions): Promise<number | null> {
    const r = await idempotent(() => this.client.leaseClient.leaseTimeToLive({ ID: leaseId }, o));
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
  async remainingMsRecent(leaseId: string, o: CallOptions): Promise<number | null> {
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
}
