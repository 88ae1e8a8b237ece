/**
 * A writer for the example and its tests: inserts, updates and deletes rows
 * of the source table at a steady rate (1–3 changes per transaction), and
 * reconnects when the server goes away.
 */
import pg from "pg";
import { ident } from "./schema.js";

export interface WriterOptions {
  /** Source database. */
  readonly url: string;
  /** Source table (created by the replicator: id bigserial, val text, version bigint). */
  readonly table: string;
  /** Transactions per second. */
  readonly txPerSecond: number;
  readonly appName?: string;
}

export class Writer {
  /** Transactions known committed. */
  committed = 0;
  /** Changes in those transactions. */
  changes = 0;
  /** Failed transactions (connection lost, server restarting); the outcome of a failed COMMIT is unknown. */
  errors = 0;
  private readonly live: string[] = [];
  private running: Promise<void> | null = null;
  private stopped = false;
  private client: pg.Client | null = null;
  private readonly table: string;

  constructor(private readonly o: WriterOptions) {
    this.table = `"${ident("table", o.table)}"`;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Stops after the transaction in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    await this.client?.end().catch(() => {});
    this.client = null;
  }

  private async connect(): Promise<pg.Client> {
    if (this.client) return this.client;
    const c = new pg.Client({
      connectionString: this.o.url,
      application_name: this.o.appName ?? "tenure-replication-writer",
    });
    c.on("error", () => {});
    await c.connect();
    this.client = c;
    return c;
  }

  private async loop(): Promise<void> {
    const interval = 1000 / this.o.txPerSecond;
    let next = Date.now();
    while (!this.stopped) {
      next += interval;
      try {
        await this.oneTransaction();
      } catch {
        this.errors += 1;
        await this.client?.end().catch(() => {});
        this.client = null;
        next = Date.now() + 100; // the server may be restarting
      }
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else next = Date.now();
    }
  }

  private pick(): string | null {
    if (this.live.length === 0) return null;
    return this.live[Math.floor(Math.random() * this.live.length)]!;
  }

  private async oneTransaction(): Promise<void> {
    const c = await this.connect();
    const ops = 1 + Math.floor(Math.random() * 3);
    const inserted: string[] = [];
    const deleted = new Set<string>();
    let n = 0;
    await c.query("BEGIN");
    try {
      for (let i = 0; i < ops; i++) {
        const r = Math.random();
        const id = this.pick();
        if (this.live.length < 20 || r < 0.45 || id === null || deleted.has(id)) {
          const res = await c.query(
            `INSERT INTO ${this.table} (val, version) VALUES (md5(random()::text), 1) RETURNING id::text AS id`,
          );
          inserted.push(res.rows[0].id);
          n += 1;
        } else if (r < 0.85) {
          const res = await c.query(
            `UPDATE ${this.table} SET val = md5(random()::text), version = version + 1 WHERE id = $1::bigint`,
            [id],
          );
          n += res.rowCount ?? 0;
        } else {
          const res = await c.query(`DELETE FROM ${this.table} WHERE id = $1::bigint`, [id]);
          n += res.rowCount ?? 0;
          deleted.add(id);
        }
      }
      await c.query("COMMIT");
    } catch (e) {
      await c.query("ROLLBACK").catch(() => {});
      throw e;
    }
    this.committed += 1;
    this.changes += n;
    this.live.push(...inserted);
    if (deleted.size > 0) {
      for (let i = this.live.length - 1; i >= 0; i--)
        if (deleted.has(this.live[i]!)) this.live.splice(i, 1);
    }
  }
}
