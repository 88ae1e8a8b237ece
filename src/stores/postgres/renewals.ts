/**
 * Renewal coalescing: while {@link RENEW_BATCHES_IN_FLIGHT} renewal
 * statements are out, new renewals queue and go out together in one
 * statement (one commit, one WAL flush), so one process can hold many leases.
 * A lone renewal uses the one-lease statement. The elector's trust window
 * counts from its own call, so time spent queued only shortens it.
 */
import type { LeaseRef, RenewResult } from "../../store/types.js";
import { schemaError } from "../common/errors.js";
import type { PgRow } from "./adapters.js";
import { parseInfo, pgArray } from "./rows.js";
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
      // Distinct names per batch: a name twice in one UPDATE … FROM is ambiguous.
      const batch: PendingRenew[] = [];
      const names = new Set<string>();
      const rest: PendingRenew[] = [];
      for (const r of this.queue) {
        if (batch.length < RENEW_BATCH_MAX && !names.has(r.lease.name)) {
          names.add(r.lease.name);
          batch.push(r);
        } else rest.push(r);
      }
      this.queue = rest;
      this.inFlight += 1;
      const done = () => {
        this.inFlight -= 1;
        this.flush();
      };
      if (batch.length === 1) {
        const one = batch[0]!;
        this.renewOne(one.lease, one.ttlMs).then(one.resolve, one.reject).finally(done);
      } else {
        this.renewBatch(batch).finally(done);
      }
    }
  }

  private async renewBatch(batch: PendingRenew[]): Promise<void> {
    let rows: PgRow[];
    try {
      rows = await this.exec("renew", SQL.renewMany(this.t), [
        pgArray(batch.map((b) => b.lease.name)),
        pgArray(batch.map((b) => b.lease.holder)),
        pgArray(batch.map((b) => b.lease.token.toString())),
        pgArray(batch.map((b) => String(b.ttlMs))),
      ]);
    } catch (e) {
      for (const b of batch) b.reject(e);
      return;
    }
    const byName = new Map<string, PgRow>();
    for (const r of rows) if (typeof r.name === "string") byName.set(r.name, r);
    for (const b of batch) {
      try {
        const r = byName.get(b.lease.name);
        if (!r) {
          throw schemaError(
            "postgres",
            "renew",
            `no result row for ${JSON.stringify(b.lease.name)}`,
          );
        }
        if (r.won === true) b.resolve({ renewed: true });
        else
          b.resolve({
            renewed: false,
            current: r.holder == null ? null : parseInfo(r, "renew", b.lease.name),
          });
      } catch (e) {
        b.reject(e);
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
