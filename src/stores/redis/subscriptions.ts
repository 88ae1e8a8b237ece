/**
 * Coalesces the Redis store's SUBSCRIBE / UNSUBSCRIBE calls: every call made
 * in the same turn of the event loop goes out on the next one, as commands of
 * up to `batchSize` channels each, in the order they were asked for (an
 * unsubscribe followed by a subscribe of the same channel stays in that order).
 * N electors started together cost ⌈N / batchSize⌉ SUBSCRIBE commands, not N
 * (one command per channel left 100 000 of them queued behind each other on
 * the subscriber connection, each with its own command timeout).
 */
import type { RedisSubscriberLike } from "./store.js";

/** Channels per SUBSCRIBE / UNSUBSCRIBE command. */
export const SUBSCRIBE_BATCH = 1000;

type Kind = "subscribe" | "unsubscribe";

interface Pending {
  kind: Kind;
  channel: string;
  resolve(): void;
  reject(e: unknown): void;
}

export class SubscriptionBatcher {
  private pending: Pending[] = [];
  private scheduled = false;

  /**
   * @param subscriber the connection at flush time (undefined once the store is
   *   closed: pending calls then resolve without a command).
   */
  constructor(
    private readonly subscriber: () => RedisSubscriberLike | undefined,
    readonly batchSize = SUBSCRIBE_BATCH,
  ) {}

  subscribe(channel: string): Promise<void> {
    return this.enqueue("subscribe", channel);
  }

  unsubscribe(channel: string): Promise<void> {
    return this.enqueue("unsubscribe", channel);
  }

  /** Sends `channels` now, `batchSize` per command; resolves when all are acknowledged. */
  static send(
    sub: RedisSubscriberLike,
    kind: Kind,
    channels: string[],
    batchSize = SUBSCRIBE_BATCH,
  ): Promise<unknown> {
    const sent: Promise<unknown>[] = [];
    for (let i = 0; i < channels.length; i += batchSize) {
      sent.push(sub[kind](...channels.slice(i, i + batchSize)));
    }
    return Promise.all(sent);
  }

  private enqueue(kind: Kind, channel: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ kind, channel, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const ops = this.pending;
    this.pending = [];
    const sub = this.subscriber();
    if (!sub) {
      for (const op of ops) op.resolve();
      return;
    }
    // Runs of the same kind, cut at batchSize; each run is one command, sent in order.
    let start = 0;
    while (start < ops.length) {
      const kind = ops[start]!.kind;
      let end = start + 1;
      while (end < ops.length && end - start < this.batchSize && ops[end]!.kind === kind) end++;
      const run = ops.slice(start, end);
      let sent: Promise<unknown>;
      try {
        sent = Promise.resolve(sub[kind](...run.map((op) => op.channel)));
      } catch (e) {
        sent = Promise.reject(e);
      }
      sent.then(
        () => {
          for (const op of run) op.resolve();
        },
        (e: unknown) => {
          for (const op of run) op.reject(e);
        },
      );
      start = end;
    }
  }
}
