/**
 * The replication work of one term: stream the source table's changes from a
 * permanent logical replication slot (pgoutput) and apply them to the sink
 * table, exactly once.
 *
 * Per batch, ONE sink transaction: fence(tx, term) (the lease row is locked
 * FOR SHARE: no newer term can start until this transaction ends, and a stale
 * term gets FencedError), skip source transactions at or below the recorded
 * LSN, apply the rest, record the new LSN, COMMIT. Only then is the LSN
 * acknowledged to the slot. A new leader resumes from the recorded LSN.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import pg from "pg";
import { LogicalReplicationService, type Pgoutput, PgoutputPlugin } from "pg-logical-replication";
import { Counter, Gauge, type Registry } from "prom-client";
import { errorMessage, isFencedError, type Logger } from "../../src/index.js";
import { formatLsn, parseLsn } from "./lsn.js";
import * as S from "./schema.js";

/** What the example needs to know; read from the environment by main.ts. */
export interface ReplicationConfig {
  /** The source database (wal_level = logical). */
  readonly sourceUrl: string;
  /** The sink database; the lease table lives here too, so the fence is in the same transaction. */
  readonly sinkUrl: string;
  readonly slot: string;
  readonly publication: string;
  readonly sourceTable: string;
  readonly sinkTable: string;
  /** A batch is committed when it holds this many changes… */
  readonly batchMaxChanges: number;
  /** …or this long after its first transaction arrived. */
  readonly batchMaxMs: number;
  /** Terminate the walsender of an old leader that still holds the slot (fenced; default true). */
  readonly takeover: boolean;
  /** Prefix of the application_name of every connection (the tests find backends by it). */
  readonly appName: string;
  /**
   * Test hook: while this file exists and holds this process's pid, a batch
   * waits before its transaction (a stall between receiving and committing),
   * after writing `<file>.held`. Never set it in production.
   */
  readonly holdFile?: string;
}

/** The fencing identity of a term: the lease, its holder and its token (the whole term is fenced). */
export interface FenceTerm {
  readonly name: string;
  readonly holder: string;
  readonly token: bigint;
}

/** Checks inside `tx` (before COMMIT) that `term` still holds its lease; throws FencedError if not. */
export type FenceFn = (tx: pg.ClientBase, term: FenceTerm) => Promise<void>;

/** The part of Tenure's StreamContext the replicator uses (the CLI mode builds its own). */
export interface RunContext {
  readonly signal: AbortSignal;
  healthy(): void;
}

export interface Change {
  readonly op: "upsert" | "delete" | "truncate";
  readonly id?: string;
  readonly val?: string;
  readonly version?: string;
}

interface SourceTx {
  readonly xid: number;
  readonly changes: Change[];
  endLsn: bigint;
}

type Item =
  | { readonly kind: "msg"; readonly msg: Pgoutput.Message }
  | { readonly kind: "keepalive"; readonly lsn: bigint };

/** Counters of this process (all terms). */
export interface ReplicationStats {
  batches: number;
  changes: number;
  transactions: number;
  /** Source transactions received again that the checkpoint showed as applied. */
  skipped: number;
  /** Batches the fence refused: a demoted leader tried to commit after its term ended. */
  fenced: number;
  /** Stream starts (first connection and reconnects). */
  starts: number;
  /** The last LSN this process committed to the sink (0 until then). */
  appliedLsn: bigint;
}

export class Replicator {
  readonly stats: ReplicationStats = {
    batches: 0,
    changes: 0,
    transactions: 0,
    skipped: 0,
    fenced: 0,
    starts: 0,
    appliedLsn: 0n,
  };
  private readonly t: S.Tables;
  private metricsPool: pg.Pool | null = null;

  constructor(
    readonly cfg: ReplicationConfig,
    private readonly fence: FenceFn,
    private readonly log: Logger,
  ) {
    this.t = S.tables(cfg.sourceTable, cfg.sinkTable);
    S.ident("slot", cfg.slot);
    S.ident("publication", cfg.publication);
  }

  /** Creates the source table, publication and slot if missing (only the leader calls this). */
  async ensureSource(): Promise<void> {
    await withClient(this.cfg.sourceUrl, `${this.cfg.appName}-setup`, async (c) => {
      await S.createTables(c, S.sourceDdl(this.t));
      const pub = await c.query("SELECT 1 FROM pg_publication WHERE pubname = $1", [
        this.cfg.publication,
      ]);
      if (pub.rowCount === 0) {
        await S.createTables(c, [
          `CREATE PUBLICATION "${this.cfg.publication}" FOR TABLE ${this.t.source}`,
        ]);
        this.log.info("created publication", { publication: this.cfg.publication });
      }
      const slot = await c.query(
        "SELECT plugin, slot_type FROM pg_replication_slots WHERE slot_name = $1",
        [this.cfg.slot],
      );
      if (slot.rowCount === 0) {
        try {
          await c.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [
            this.cfg.slot,
          ]);
          this.log.info("created replication slot", { slot: this.cfg.slot });
        } catch (e) {
          if ((e as { code?: string }).code !== "42710") throw e;
        }
      } else if (slot.rows[0].plugin !== "pgoutput" || slot.rows[0].slot_type !== "logical") {
        throw new Error(
          `replication: slot "${this.cfg.slot}" exists but is ${slot.rows[0].slot_type}/${slot.rows[0].plugin}, not logical/pgoutput`,
        );
      }
    });
  }

  /**
   * Streams until `ctx.signal` aborts (returns) or the stream fails (throws;
   * the recovery strategy decides what next). Never acknowledges an LSN that
   * is not committed in the sink.
   */
  async run(term: FenceTerm, ctx: RunContext): Promise<void> {
    const sink = new pg.Client({
      connectionString: this.cfg.sinkUrl,
      application_name: `${this.cfg.appName}-sink`,
    });
    let sinkError: Error | null = null;
    sink.on("error", (e) => {
      sinkError = e;
    });
    await sink.connect();
    try {
      await S.createTables(sink, S.sinkDdl(this.t));
      await this.ensureSource();
      if (ctx.signal.aborted) return;
      const session = new Session(this, this.t, term, ctx, sink, this.fence, this.log);
      await session.run(() => sinkError);
    } finally {
      await sink.end().catch(() => {});
    }
  }

  /** Test hook (see {@link ReplicationConfig.holdFile}): a stall before the batch's transaction. */
  async holdIfAsked(): Promise<void> {
    const f = this.cfg.holdFile;
    if (!f || !existsSync(f)) return;
    let who = "";
    try {
      who = readFileSync(f, "utf8").trim();
    } catch {
      return;
    }
    if (who !== String(process.pid)) return;
    writeFileSync(`${f}.held`, String(process.pid));
    this.log.warn("test hook: batch held before its transaction", { holdFile: f });
    const deadline = Date.now() + 60_000;
    while (existsSync(f) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    rmSync(`${f}.held`, { force: true });
  }

  /** Registers the replication metrics (slot lag read from the source at scrape time). */
  registerMetrics(registry: Registry, prefix = "replication_"): void {
    const registers = [registry];
    const labels = { slot: this.cfg.slot };
    const self = this;
    new Gauge({
      name: `${prefix}slot_lag_bytes`,
      help: "WAL between the source's current position and the slot's confirmed_flush_lsn (-1 if unknown).",
      labelNames: ["slot"],
      registers,
      async collect() {
        this.set(labels, await self.slotLagBytes());
      },
    });
    new Gauge({
      name: `${prefix}applied_lsn`,
      help: "Last LSN this process committed to the sink, as a byte position.",
      labelNames: ["slot"],
      registers,
      collect() {
        this.set(labels, Number(self.stats.appliedLsn));
      },
    });
    const counter = (name: string, help: string, field: keyof ReplicationStats) =>
      new Counter({
        name: `${prefix}${name}`,
        help,
        labelNames: ["slot"],
        registers,
        collect() {
          this.reset();
          this.inc(labels, Number(self.stats[field]));
        },
      });
    counter("batches_total", "Batches committed to the sink.", "batches");
    counter("changes_total", "Row changes applied to the sink.", "changes");
    counter("transactions_total", "Source transactions applied.", "transactions");
    counter(
      "skipped_transactions_total",
      "Source transactions received again and skipped (already applied).",
      "skipped",
    );
    counter(
      "fenced_batches_total",
      "Batches refused by the fence (a demoted leader's commit).",
      "fenced",
    );
    counter("stream_starts_total", "Replication stream starts.", "starts");
  }

  /** Bytes of WAL the slot still holds back: pg_current_wal_lsn() − confirmed_flush_lsn. */
  async slotLagBytes(): Promise<number> {
    this.metricsPool ??= new pg.Pool({
      connectionString: this.cfg.sourceUrl,
      application_name: `${this.cfg.appName}-metrics`,
      max: 1,
      idleTimeoutMillis: 10_000,
    });
    this.metricsPool.on("error", () => {});
    try {
      const r = await this.metricsPool.query(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag
         FROM pg_replication_slots WHERE slot_name = $1`,
        [this.cfg.slot],
      );
      const lag = r.rows[0]?.lag;
      return typeof lag === "number" ? lag : -1;
    } catch {
      return -1;
    }
  }

  async close(): Promise<void> {
    await this.metricsPool?.end().catch(() => {});
    this.metricsPool = null;
  }
}

/** One connection of the stream: the queue between the walsender and the sink. */
class Session {
  private readonly queue: Item[] = [];
  private wake: (() => void) | null = null;
  private failure: Error | null = null;
  private current: SourceTx | null = null;
  private pending: SourceTx[] = [];
  private pendingChanges = 0;
  private firstPendingAt = 0;
  /** Highest LSN known committed (checkpoint, the slot's confirmed position, or our commits). */
  private acked = 0n;
  private readonly service: LogicalReplicationService;
  private reportedHealthy = false;

  constructor(
    private readonly r: Replicator,
    private readonly t: S.Tables,
    private readonly term: FenceTerm,
    private readonly ctx: RunContext,
    private readonly sink: pg.Client,
    private readonly fence: FenceFn,
    private readonly log: Logger,
  ) {
    this.service = new LogicalReplicationService(
      {
        connectionString: r.cfg.sourceUrl,
        application_name: `${r.cfg.appName}-stream`,
      },
      // Never let the library acknowledge by itself: only committed LSNs are acknowledged.
      { acknowledge: { auto: false, timeoutSeconds: 0 } },
    );
  }

  private push(item: Item): void {
    this.queue.push(item);
    this.wake?.();
  }

  private fail(e: unknown): void {
    this.failure ??= e instanceof Error ? e : new Error(errorMessage(e));
    this.wake?.();
  }

  private stopped(): boolean {
    return this.ctx.signal.aborted || this.failure !== null;
  }

  /**
   * Acknowledges `lsn` (the end of what is committed) to the slot. The library
   * reports `lsn + 1` as flushed ("last byte + 1"); the commit's end LSN
   * already is that, so pass one less or the server could skip a transaction
   * whose commit record starts exactly there.
   */
  private ack(lsn: bigint): void {
    if (lsn > this.acked) this.acked = lsn;
    if (this.acked > 0n && !this.service.isStop())
      void this.service.acknowledge(formatLsn(this.acked - 1n)).catch(() => {});
  }

  async run(sinkFailure: () => Error | null): Promise<void> {
    const { r, term, ctx, log } = this;
    const fields = { slot: r.cfg.slot, token: term.token };
    const ck = await this.sink.query(S.readCheckpoint(this.t), [r.cfg.slot]);
    const resume = ck.rows[0] ? parseLsn(ck.rows[0].lsn) : 0n;
    const slot = await withClient(r.cfg.sourceUrl, `${r.cfg.appName}-setup`, (c) =>
      c.query(
        "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1",
        [r.cfg.slot],
      ),
    );
    // Acknowledgements never go below what the slot already confirmed.
    const confirmed = slot.rows[0]?.lsn ? parseLsn(slot.rows[0].lsn) : 0n;
    this.acked = resume > confirmed ? resume : confirmed;

    const s = this.service;
    s.on("data", (_lsn: string, msg: Pgoutput.Message) => this.push({ kind: "msg", msg }));
    s.on("heartbeat", (lsn: string, _ts: number, shouldRespond: boolean) => {
      this.push({ kind: "keepalive", lsn: parseLsn(lsn) });
      if (shouldRespond) this.ack(this.acked);
    });
    s.on("error", (e: Error) => this.fail(e));
    const onAbort = () => {
      this.wake?.();
      void s.stop().catch(() => {});
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    r.stats.starts += 1;
    log.info("starting replication stream", { ...fields, from: formatLsn(resume) });
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [r.cfg.publication] });
    const streaming = s.subscribe(plugin, r.cfg.slot, formatLsn(resume)).then(
      () => this.fail(new Error("replication stream ended")),
      (e: unknown) => this.fail(e),
    );
    try {
      await this.consume(sinkFailure);
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      await s.destroy().catch(() => {});
      await streaming;
    }
    if (ctx.signal.aborted) return;
    const e = this.failure ?? new Error("replication stream stopped");
    if ((e as { code?: string }).code === "55006") await this.takeOver(e);
    throw e;
  }

  /** The single consumer: applies items in the order the walsender sent them. */
  private async consume(sinkFailure: () => Error | null): Promise<void> {
    const { r } = this;
    while (!this.stopped()) {
      const se = sinkFailure();
      if (se) return this.fail(se);
      const item = this.queue.shift();
      if (!item) {
        const waitMs =
          this.pending.length > 0 ? this.firstPendingAt + r.cfg.batchMaxMs - Date.now() : 1_000;
        if (waitMs <= 0) {
          await this.flushOrFail();
          continue;
        }
        await new Promise<void>((res) => {
          const timer = setTimeout(res, waitMs);
          this.wake = () => {
            clearTimeout(timer);
            res();
          };
        });
        this.wake = null;
        continue;
      }
      if (item.kind === "keepalive") {
        // Everything sent before this keepalive is committed: nothing between is ours to apply.
        if (!this.current && this.pending.length === 0) {
          this.ack(item.lsn);
          this.markHealthy();
        }
        continue;
      }
      this.handle(item.msg);
      if (this.pendingChanges >= r.cfg.batchMaxChanges) await this.flushOrFail();
    }
  }

  private handle(msg: Pgoutput.Message): void {
    switch (msg.tag) {
      case "begin":
        this.current = { xid: msg.xid, changes: [], endLsn: 0n };
        return;
      case "insert":
      case "update": {
        const row = msg.new as { id: string; val: string; version: string };
        this.current?.changes.push({
          op: "upsert",
          id: String(row.id),
          val: row.val,
          version: String(row.version),
        });
        return;
      }
      case "delete": {
        const key = (msg.key ?? msg.old) as { id: string } | null;
        if (key) this.current?.changes.push({ op: "delete", id: String(key.id) });
        return;
      }
      case "truncate":
        this.current?.changes.push({ op: "truncate" });
        return;
      case "commit": {
        const tx = this.current;
        this.current = null;
        if (!tx || !msg.commitEndLsn) return;
        tx.endLsn = parseLsn(msg.commitEndLsn);
        if (this.pending.length === 0) this.firstPendingAt = Date.now();
        this.pending.push(tx);
        this.pendingChanges += tx.changes.length;
        return;
      }
      default:
        return;
    }
  }

  private async flushOrFail(): Promise<void> {
    try {
      await this.flush();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Applies the pending transactions in one fenced sink transaction, then acknowledges. */
  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    this.pendingChanges = 0;
    if (batch.length === 0) return;
    const { r, t, sink, term } = this;
    await r.holdIfAsked();
    const slot = r.cfg.slot;
    let applied: SourceTx[] = [];
    await sink.query("BEGIN");
    try {
      // First the fence: from here to COMMIT no newer term can start; a stale one stops here.
      await this.fence(sink, term);
      const ck = await sink.query(S.lockCheckpoint(t), [slot]);
      const done = ck.rows[0] ? parseLsn(ck.rows[0].lsn) : 0n;
      // The slot may send a transaction again (an acknowledgement lost in a crash): skip it.
      applied = batch.filter((tx) => tx.endLsn > done);
      // Set-based: three statements whatever the batch size, so the transaction (which
      // holds the lease row) stays short and the leader's own renewals are not held up.
      const net = netEffect(applied);
      if (net.truncate) await sink.query(`DELETE FROM ${t.sink}`);
      if (net.deletes.length > 0) await sink.query(S.deleteRows(t), [net.deletes]);
      if (net.upserts.length > 0) {
        await sink.query(S.upsertRows(t), [
          net.upserts.map((u) => u.id),
          net.upserts.map((u) => u.val),
          net.upserts.map((u) => u.version),
          net.upserts.map((u) => u.count),
        ]);
      }
      if (applied.length > 0) {
        await sink.query(S.logApplied(t), [
          applied.map((tx) => formatLsn(tx.endLsn)),
          applied.map((tx) => String(tx.xid)),
          term.token.toString(),
          applied.map((tx) => tx.changes.length),
        ]);
        const last = applied[applied.length - 1]!.endLsn;
        await sink.query(S.writeCheckpoint(t), [slot, formatLsn(last), term.token.toString()]);
      }
      await sink.query("COMMIT");
    } catch (e) {
      await sink.query("ROLLBACK").catch(() => {});
      if (isFencedError(e)) {
        r.stats.fenced += 1;
        this.log.warn("stale batch refused by the fence", {
          slot,
          token: term.token,
          transactions: batch.length,
          err: e,
        });
      }
      throw e;
    }
    r.stats.batches += 1;
    r.stats.transactions += applied.length;
    r.stats.skipped += batch.length - applied.length;
    for (const tx of applied) r.stats.changes += tx.changes.length;
    const last = batch[batch.length - 1]!.endLsn;
    if (applied.length > 0) r.stats.appliedLsn = last;
    // Only now, after COMMIT, may the slot forget these transactions.
    this.ack(last);
    this.markHealthy();
  }

  private markHealthy(): void {
    if (this.reportedHealthy) return;
    this.reportedHealthy = true;
    this.ctx.healthy();
  }

  /**
   * The slot is still held by another walsender (an old leader that is paused
   * or cut off). Terminate it, fenced: inside a sink transaction that first
   * proves this term still holds the lease, so a stale leader can never
   * terminate the current leader's stream. The caller then fails this attempt
   * and the recovery strategy retries.
   */
  private async takeOver(cause: Error): Promise<void> {
    const { r, sink, term } = this;
    if (!r.cfg.takeover) return;
    try {
      await sink.query("BEGIN");
      try {
        await this.fence(sink, term);
        const n = await withClient(r.cfg.sourceUrl, `${r.cfg.appName}-setup`, async (c) => {
          const res = await c.query(
            `SELECT active_pid, pg_terminate_backend(active_pid) AS ok FROM pg_replication_slots
             WHERE slot_name = $1 AND active_pid IS NOT NULL`,
            [r.cfg.slot],
          );
          return res.rows.map((x) => x.active_pid as number);
        });
        await sink.query("COMMIT");
        this.log.warn("slot held by another walsender; terminated it", {
          slot: r.cfg.slot,
          token: term.token,
          pids: n.join(","),
          err: cause,
        });
      } catch (e) {
        await sink.query("ROLLBACK").catch(() => {});
        throw e;
      }
    } catch (e) {
      this.log.debug("slot takeover failed", { slot: r.cfg.slot, err: e });
    }
  }
}

interface NetUpsert {
  id: string;
  val: string;
  version: string;
  /** Changes to apply to the row (upserts since its last delete in the batch). */
  count: number;
}

/**
 * What a batch does to the sink, in order: a truncate (everything before the
 * last one is moot), then deletes, then upserts. Per id the last upsert wins;
 * an id deleted in the batch is deleted first, and upserts after its last
 * delete re-create it with `applied` counting only those.
 */
export function netEffect(txs: readonly { changes: readonly Change[] }[]): {
  truncate: boolean;
  deletes: string[];
  upserts: NetUpsert[];
} {
  let truncate = false;
  const deleted = new Set<string>();
  const upserts = new Map<string, NetUpsert>();
  for (const tx of txs) {
    for (const c of tx.changes) {
      if (c.op === "truncate") {
        truncate = true;
        deleted.clear();
        upserts.clear();
      } else if (c.op === "delete") {
        deleted.add(c.id!);
        upserts.delete(c.id!);
      } else {
        const u = upserts.get(c.id!);
        upserts.set(c.id!, {
          id: c.id!,
          val: c.val!,
          version: c.version!,
          count: (u?.count ?? 0) + 1,
        });
      }
    }
  }
  return { truncate, deletes: [...deleted], upserts: [...upserts.values()] };
}

async function withClient<T>(
  url: string,
  app: string,
  fn: (c: pg.Client) => Promise<T>,
): Promise<T> {
  const c = new pg.Client({ connectionString: url, application_name: app });
  c.on("error", () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}
