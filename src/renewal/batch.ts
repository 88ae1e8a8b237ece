import { callAsync } from "../async.js";
import type { Clock } from "../clock.js";
import type { RenewResult } from "../store/types.js";
import type { RenewOutcome } from "./outcome.js";
import type { Renewal } from "./renewal.js";
import type { RenewStore } from "./renewer.js";
import { resultCountError } from "./result-count.js";

/**
 * One batch in flight: at most the renewer's batch size of requests, sent at
 * `sentAt` as one `renewMany` round trip (or, for a store without it, one
 * `renew` per request, all at once). Each request gets its own outcome; a
 * round trip that fails as a whole is each request's own failure. The batch
 * races the clock with one timer: a request still in flight at its deadline
 * is answered `timeout` then, whatever the store does later.
 */
export class Batch {
  private pending = 0;
  private timer: AbortController | null = null;

  constructor(
    private readonly store: RenewStore,
    private readonly clock: Clock,
    readonly items: readonly Renewal[],
    readonly sentAt: number,
  ) {}

  /** Sends the batch. */
  send(): void {
    const { items, sentAt, store } = this;
    for (const r of items) r.batch = this;
    this.pending = items.length;
    this.armDeadline();
    const renewed: RenewOutcome = { kind: "renewed", sentAt };
    const judge = (res: RenewResult | undefined): RenewOutcome =>
      res?.renewed ? renewed : { kind: "lost", sentAt, current: res?.current ?? null };
    const renewMany = store.renewMany;
    if (renewMany) {
      callAsync(() =>
        renewMany.call(
          store,
          items.map((r) => r.item),
        ),
      ).then(
        (results) => {
          const error = resultCountError(results, items.length, "tenure renewer: renewMany");
          if (error) {
            for (const r of items) this.answer(r, { kind: "failed", sentAt, error });
            return;
          }
          for (let i = 0; i < items.length; i++)
            this.answer(items[i] as Renewal, judge(results[i]));
        },
        (error: unknown) => {
          for (const r of items) this.answer(r, { kind: "failed", sentAt, error });
        },
      );
      return;
    }
    for (const r of items) {
      callAsync(() => store.renew(r.item.lease, r.item.ttlMs)).then(
        (res) => this.answer(r, judge(res)),
        (error: unknown) => this.answer(r, { kind: "failed", sentAt, error }),
      );
    }
  }

  /** `r` left while in flight: its answer is no longer awaited. */
  drop(r: Renewal): void {
    if (r.batch !== this) return;
    r.batch = null;
    this.done();
  }

  private answer(r: Renewal, o: RenewOutcome): void {
    if (r.batch !== this) return; // left, or already answered at its deadline
    r.batch = null;
    this.done();
    r.settle(o);
  }

  private done(): void {
    this.pending -= 1;
    if (this.pending === 0) {
      this.timer?.abort();
      this.timer = null;
    }
  }

  /** One timer for the earliest deadline of the requests still in flight. */
  private armDeadline(): void {
    let first = Number.POSITIVE_INFINITY;
    for (const r of this.items) if (r.batch === this && r.deadline < first) first = r.deadline;
    if (first === Number.POSITIVE_INFINITY) return;
    const ac = new AbortController();
    this.timer = ac;
    this.clock.sleep(Math.max(0, first - this.clock.now()), ac.signal).then(
      () => {
        if (this.timer !== ac) return;
        this.timer = null;
        const now = this.clock.now();
        const timeout: RenewOutcome = { kind: "timeout", sentAt: this.sentAt };
        for (const r of this.items)
          if (r.batch === this && r.deadline <= now) this.answer(r, timeout);
        if (this.pending > 0) this.armDeadline();
      },
      () => {},
    );
  }
}
