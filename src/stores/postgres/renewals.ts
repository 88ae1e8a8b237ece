/**
 * Renewal coalescing: while {@link RENEW_BATCHES_IN_FLIGHT} renewal
 * statements are out, new renewals queue and go out together in one
 * statement (one commit, one WAL flush; {@link renewMany}), so one process can
 * hold many leases even when its callers renew one by one (the shared renewal
 * path calls the store's renewMany itself and bypasses this queue).
 * A lone renewal uses the one-lease statement. The elector's trust window
 * counts from its own call, so time spent queued only shortens it.
 */
import type { LeaseRef, RenewResult } from "../../store/types.js";
import type { PgRow } from "./adapters.js";
import { renewMany } from "./renew-many.js";
import { parseInfo } from "./rows.js";
import * as SQL from "./sql.js";

/** Renewal statements out at once; further renewals queue and go out together. */
const RENEW_BATCHES_IN_FLIGHT = 2;
/** Most renewals in one statement. */
const RENEW_BATCH_MAX = 500;

/** Renewals waiting for a batch. */
interface PendingRenew {
  readonly lease: LeaseRef;
  readonly ttlMs: number;
  readonly resolve: (r: RenewResult) => void;
  readonly reject: (e: unknown) => void;
}

/** Runs one statement of the store (closed check, table init, bound and classification included). */
export type Exec = (op: string, text: string, params: readonly string[]) => Promise<PgRow[]>;

export class RenewBatcher {
  private queue: PendingRenew[] = [];
  private inFlight = 0;

  constructor(
    private readonly exec: Exec,
    private readonly t: SQL.Tables,
  ) {}

  /** Renews `lease` in the next batch (arguments already validated). */
  renew(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    return new Promise<RenewResult>((resolve, reject) => {
      this.queue.push({ lease, ttlMs, resolve, reject });
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0 && this.inFlight < RENEW_BATCHES_IN_FLIGHT) {
      // renewMany handles the same term twice in one statement.
      const batch = this.queue.splice(0, RENEW_BATCH_MAX);
      this.inFlight += 1;
      const done = () => {
        this.inFlight -= 1;
        this.flush();
      };
      if (batch.length === 1) {
        const one = batch[0]!;
        this.renewOne(one.lease, one.ttlMs).then(one.resolve, one.reject).finally(done);
      } else {
        renewMany(this.exec, this.t, batch, "renew")
          .then(
            (res) => {
              for (const [i, b] of batch.entries()) b.resolve(res[i]!);
            },
            (e: unknown) => {
              for (const b of batch) b.reject(e);
            },
          )
          .finally(done);
      }
    }
  }

  private async renewOne(lease: LeaseRef, ttlMs: number): Promise<RenewResult> {
    const rows = await this.exec("renew", SQL.renew(this.t), [
      lease.name,
      lease.holder,
      lease.token.toString(),
      String(ttlMs),
    ]);
    const r = rows[0];
    if (r?.won === true) return { renewed: true };
    return { renewed: false, current: r ? parseInfo(r, "renew", lease.name) : null };
  }
}
