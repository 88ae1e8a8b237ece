/**
 * End-to-end scenario of examples/replication: a throwaway PostgreSQL cluster
 * with wal_level = logical, three processes running the example, a writer
 * changing the source table at a steady rate, and faults — SIGKILL of the
 * leader, SIGSTOP past the ttl with a batch parked before its transaction,
 * termination of the leader's walsender and backends, `pg_ctl restart -m
 * immediate`. Then the writer stops, the stream drains, and the result is
 * checked. Used by replication.test.ts (one round) and long.ts (many).
 * TENURE_TEST_REPLICATION_LOGS=DIR keeps each process's log lines there.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Writer } from "../../examples/replication/writer.js";
import { PostgresServer, scratchDir } from "../helpers/chaos-servers.js";
import { freePort } from "../helpers/ports.js";

const MAIN = fileURLToPath(new URL("../../examples/replication/main.js", import.meta.url));
const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

const SLOT = "repl_e2e";
const PUBLICATION = "repl_e2e";
const SOURCE = "repl_src";
const SINK = "repl_sink";
const LEASE = "replication-e2e";

export type FaultKind = "kill" | "stall" | "cut" | "restart";

export interface ScenarioOptions {
  /**
   * `elector`: each process runs main.js, which campaigns itself (elector.stream).
   * `cli`: each process is `tenure run … -- node main.js` (the CLI campaigns;
   * the child gets TENURE_TOKEN). Default `elector`.
   */
  mode?: "elector" | "cli";
  /** Faults in order; the long profile repeats the list until `durationMs` passes. */
  faults: FaultKind[];
  /** Keep cycling the faults until this much time has passed (0: one pass). */
  durationMs?: number;
  /** Writer transactions per second (each writer). */
  txPerSecond: number;
  /** Writers, each on its own connection. Default 1. */
  writers?: number;
  ttlMs: number;
  /** Quiet time between faults (the stream runs undisturbed). */
  settleMs: number;
  say?: (s: string) => void;
}

export interface FaultRecord {
  kind: FaultKind;
  /** Time from the fault to the first source transaction committed to the sink after it. */
  resumeMs: number;
}

export interface ScenarioResult {
  elapsedMs: number;
  writer: { committed: number; changes: number; errors: number };
  /** Source transactions and changes in the applied log. */
  appliedTransactions: number;
  appliedChanges: number;
  faults: FaultRecord[];
  /** Lease terms that committed at least one batch. */
  terms: number;
  /** Batches refused by the fence (logged by the demoted processes). */
  fencedBatches: number;
  /** Slot takeovers (an old walsender terminated by the new leader). */
  takeovers: number;
  /** Rows in source; rows differing between source and sink (either way). */
  sourceRows: number;
  mismatchedRows: number;
  /** Sink rows whose applied-change count differs from the source version (a change lost or doubled). */
  wrongApplyCounts: number;
  /** Applied-log rows whose LSN is not above the previous one (a transaction applied twice, or a checkpoint going back). */
  lsnRegressions: number;
  /** Applied-log rows whose fencing token is below the previous one (a stale term's commit accepted). */
  tokenRegressions: number;
  /** The slot's confirmed_flush_lsn reached the WAL position taken after the writer stopped. */
  slotCaughtUp: boolean;
  /** Time from the writer's stop to the sink equal to the source and the slot caught up. */
  drainMs: number;
  /** The leader's replication_slot_lag_bytes after the drain (-1 if it could not be read). */
  lagMetric: number;
  /** Processes that exited while they should have been running (never SIGKILLed by the test). */
  unexpectedExits: string[];
  /** Exit codes of the processes on the final SIGTERM. */
  finalExitCodes: (number | null)[];
  /** Largest number of log lines of one process, and the most often repeated message. */
  maxLogLines: number;
  maxRepeats: { msg: string; count: number };
  /** Log lines that were not JSON (crashes, stack traces). */
  strayLines: string[];
}

interface Replica {
  slotIndex: number;
  holder: string;
  app: string;
  metricsPort: number;
  proc: ChildProcess;
  lines: string[];
  killedByTest: boolean;
  exit: Promise<number | null>;
}

export async function runScenario(o: ScenarioOptions): Promise<ScenarioResult> {
  const say = o.say ?? (() => {});
  const started = Date.now();
  const server = new PostgresServer({
    wal_level: "logical",
    max_replication_slots: "10",
    max_wal_senders: "20",
  });
  const dir = scratchDir("repl");
  const holdFile = join(dir, "hold");
  const replicas: Replica[] = [];
  const allReplicas: Replica[] = [];
  let writers: Writer[] = [];
  let gen = 0;
  try {
    await server.start();
    const url = server.url;
    const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
      const c = new pg.Client({ connectionString: url, application_name: "repl-e2e-admin" });
      c.on("error", () => {});
      await c.connect();
      try {
        return await fn(c);
      } finally {
        await c.end().catch(() => {});
      }
    };
    const q = async (text: string, params: unknown[] = []) =>
      (await admin((c) => c.query(text, params))).rows;
    const poll = async <T>(what: string, ms: number, f: () => Promise<T | null | false>) => {
      const deadline = Date.now() + ms;
      let last: unknown = null;
      for (;;) {
        try {
          const v = await f();
          if (v) return v;
        } catch (e) {
          last = e;
        }
        if (Date.now() > deadline)
          throw new Error(
            `timed out after ${ms} ms waiting for ${what}${last ? ` (${last})` : ""}`,
          );
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    if ((await q("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [SLOT])).length > 0)
      throw new Error("the slot exists before the example ran");

    const spawnReplica = async (slotIndex: number): Promise<Replica> => {
      gen += 1;
      const holder = `r${slotIndex}-g${gen}`;
      const app = `repl-${holder}`;
      const metricsPort = await freePort();
      const args =
        o.mode === "cli"
          ? [
              CLI,
              "run",
              "--store",
              url,
              "--name",
              LEASE,
              "--ttl",
              `${o.ttlMs}ms`,
              "--grace",
              `${Math.floor((o.ttlMs * 2) / 3)}ms`,
              "--holder",
              holder,
              "--log-format",
              "json",
              "--",
              process.execPath,
              MAIN,
            ]
          : [MAIN];
      const proc = spawn(process.execPath, ["--enable-source-maps", ...args], {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          REPLICATION_SOURCE_URL: url,
          REPLICATION_SLOT: SLOT,
          REPLICATION_PUBLICATION: PUBLICATION,
          REPLICATION_SOURCE_TABLE: SOURCE,
          REPLICATION_SINK_TABLE: SINK,
          REPLICATION_LEASE: LEASE,
          REPLICATION_TTL_MS: String(o.ttlMs),
          REPLICATION_HOLDER: holder,
          REPLICATION_APP_NAME: app,
          REPLICATION_LOG_FORMAT: "json",
          REPLICATION_HEALTH_PORT: String(metricsPort),
          REPLICATION_RECONNECT_INITIAL_DELAY_MS: "100",
          REPLICATION_RECONNECT_MAX_DELAY_MS: "1000",
          REPLICATION_TEST_HOLD_FILE: holdFile,
          TENURE_STORE: o.mode === "cli" ? url : "",
        },
      });
      const lines: string[] = [];
      const collect = (s: NodeJS.ReadableStream) => {
        let buf = "";
        s.on("data", (d: Buffer) => {
          buf += d.toString();
          const parts = buf.split("\n");
          buf = parts.pop() ?? "";
          for (const l of parts) if (l.length > 0 && lines.length < 100_000) lines.push(l);
        });
      };
      collect(proc.stdout!);
      collect(proc.stderr!);
      const exit = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
      const rep: Replica = {
        slotIndex,
        holder,
        app,
        metricsPort,
        proc,
        lines,
        killedByTest: false,
        exit,
      };
      allReplicas.push(rep);
      return rep;
    };
    for (let i = 0; i < 3; i++) replicas.push(await spawnReplica(i));

    const leaseRow = async () =>
      (
        await q(
          "SELECT holder, token::text AS token FROM tenure_leases WHERE name = $1 AND expires_at > now()",
          [LEASE],
        )
      )[0] as { holder: string; token: string } | undefined;
    const leader = async (): Promise<{ rep: Replica; token: bigint }> =>
      poll("a leader", 10 * o.ttlMs, async () => {
        const row = await leaseRow();
        const rep = row && replicas.find((r) => r.holder === row.holder);
        return rep ? { rep, token: BigInt(row.token) } : null;
      });
    const appliedAfter = (t: Date, minToken = 0n) =>
      poll("a batch committed after the fault", 30_000, async () => {
        const rows = await q(
          `SELECT at FROM ${SINK}_applied WHERE at > $1 AND token >= $2::bigint ORDER BY seq LIMIT 1`,
          [t, minToken.toString()],
        );
        return rows[0] ? (rows[0].at as Date) : null;
      });

    say("waiting for the leader to create the slot");
    await poll("the slot", 30_000, async () =>
      (await q("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", [SLOT])).length > 0
        ? true
        : null,
    );
    writers = Array.from(
      { length: o.writers ?? 1 },
      () => new Writer({ url, table: SOURCE, txPerSecond: o.txPerSecond, appName: "repl-writer" }),
    );
    for (const w of writers) w.start();
    await appliedAfter(new Date(0));
    say("streaming");

    const faults: FaultRecord[] = [];
    const settle = () => new Promise((r) => setTimeout(r, o.settleMs));
    const deadline = Date.now() + (o.durationMs ?? 0);
    do {
      if (o.faults.length === 0) await new Promise((r) => setTimeout(r, deadline - Date.now()));
      for (const kind of o.faults) {
        await settle();
        const { rep, token } = await leader();
        const at = new Date();
        say(`fault ${kind}: leader ${rep.holder} token ${token}`);
        if (kind === "kill") {
          rep.killedByTest = true;
          rep.proc.kill("SIGKILL");
          await rep.exit;
          replicas.splice(replicas.indexOf(rep), 1, await spawnReplica(rep.slotIndex));
          const resumed = await appliedAfter(at, token + 1n);
          faults.push({ kind, resumeMs: resumed.getTime() - at.getTime() });
        } else if (kind === "stall" && o.mode === "cli") {
          // Only `tenure run` stops; its command keeps streaming with a token that goes stale.
          const refusedBefore = countMsg(rep, "stale batch refused by the fence");
          rep.proc.kill("SIGSTOP");
          const resumed = await appliedAfter(at, token + 1n);
          faults.push({ kind, resumeMs: resumed.getTime() - at.getTime() });
          rep.proc.kill("SIGCONT");
          await poll(
            "a stale batch of the stopped leader's command to be refused",
            15_000,
            async () => countMsg(rep, "stale batch refused by the fence") > refusedBefore,
          );
        } else if (kind === "stall") {
          writeFileSync(holdFile, String(rep.proc.pid));
          await poll("a batch parked before its transaction", 10_000, async () =>
            existsSync(`${holdFile}.held`),
          );
          const stoppedAt = new Date();
          rep.proc.kill("SIGSTOP");
          // Past the ttl: another process takes the lease and the slot, and commits.
          const resumed = await appliedAfter(stoppedAt, token + 1n);
          faults.push({ kind, resumeMs: resumed.getTime() - stoppedAt.getTime() });
          const refusedBefore = countMsg(rep, "stale batch refused by the fence");
          rmSync(holdFile, { force: true });
          rep.proc.kill("SIGCONT");
          await poll(
            "the resumed leader's stale batch to be refused",
            15_000,
            async () => countMsg(rep, "stale batch refused by the fence") > refusedBefore,
          );
        } else if (kind === "cut") {
          await q(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
            [`${rep.app}-%`],
          );
          const resumed = await appliedAfter(at);
          faults.push({ kind, resumeMs: resumed.getTime() - at.getTime() });
        } else {
          await server.restart();
          const resumed = await appliedAfter(at);
          faults.push({ kind, resumeMs: resumed.getTime() - at.getTime() });
        }
        for (const r of replicas) {
          if (r.proc.exitCode !== null || r.proc.signalCode !== null)
            throw new Error(`${r.holder} exited (${r.proc.exitCode ?? r.proc.signalCode})`);
        }
      }
    } while (Date.now() < deadline);

    say("stopping the writer; draining");
    await Promise.all(writers.map((w) => w.stop()));
    const sum = (f: (w: Writer) => number) => writers.reduce((n, w) => n + f(w), 0);
    const drainFrom = Date.now();
    const [{ lsn: endLsn }] = await q("SELECT pg_current_wal_lsn()::text AS lsn");
    const diff = `SELECT count(*)::int AS n FROM (
        (SELECT id, val, version FROM ${SOURCE} EXCEPT SELECT id, val, version FROM ${SINK})
        UNION ALL
        (SELECT id, val, version FROM ${SINK} EXCEPT SELECT id, val, version FROM ${SOURCE})) d`;
    let mismatchedRows = -1;
    let slotCaughtUp = false;
    try {
      await poll("the drain", 30_000, async () => {
        mismatchedRows = (await q(diff))[0].n;
        const s = await q(
          "SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2",
          [endLsn, SLOT],
        );
        slotCaughtUp = s[0]?.ok === true;
        return mismatchedRows === 0 && slotCaughtUp;
      });
    } catch {
      // reported through mismatchedRows / slotCaughtUp
    }
    const drainMs = Date.now() - drainFrom;

    const { rep: last } = await leader();
    const lagMetric = await fetch(`http://127.0.0.1:${last.metricsPort}/metrics`)
      .then((r) => r.text())
      .then((t) => {
        const m = /^replication_slot_lag_bytes\{[^}]*\} (\S+)$/m.exec(t);
        return m ? Number(m[1]) : -1;
      })
      .catch(() => -1);

    const [counts] = await q(
      `SELECT count(*)::int AS txs, coalesce(sum(changes), 0)::int AS changes,
              count(DISTINCT token)::int AS terms FROM ${SINK}_applied`,
    );
    const [regress] = await q(
      `SELECT count(*) FILTER (WHERE lsn <= prev_lsn)::int AS lsn,
              count(*) FILTER (WHERE token < prev_token)::int AS token
       FROM (SELECT lsn, token, lag(lsn) OVER w AS prev_lsn, lag(token) OVER w AS prev_token
             FROM ${SINK}_applied WINDOW w AS (ORDER BY seq)) x`,
    );
    const [apply] = await q(
      `SELECT count(*)::int AS n FROM ${SINK} k JOIN ${SOURCE} s USING (id) WHERE k.applied <> s.version`,
    );
    const [rows] = await q(`SELECT count(*)::int AS n FROM ${SOURCE}`);

    const unexpectedExits = allReplicas
      .filter((r) => !r.killedByTest && (r.proc.exitCode !== null || r.proc.signalCode !== null))
      .map((r) => `${r.holder}: ${r.proc.exitCode ?? r.proc.signalCode}`);
    for (const r of replicas) r.proc.kill("SIGTERM");
    const finalExitCodes = await Promise.all(
      replicas.map((r) =>
        Promise.race([r.exit, new Promise<null>((res) => setTimeout(() => res(null), 15_000))]),
      ),
    );

    let maxLogLines = 0;
    let maxRepeats = { msg: "", count: 0 };
    const strayLines: string[] = [];
    for (const r of allReplicas) {
      maxLogLines = Math.max(maxLogLines, r.lines.length);
      const byMsg = new Map<string, number>();
      for (const l of r.lines) {
        try {
          const m = String((JSON.parse(l) as { msg: unknown }).msg);
          byMsg.set(m, (byMsg.get(m) ?? 0) + 1);
        } catch {
          if (strayLines.length < 20) strayLines.push(`${r.holder}: ${l}`);
        }
      }
      for (const [msg, count] of byMsg) if (count > maxRepeats.count) maxRepeats = { msg, count };
    }
    const fencedBatches = allReplicas.reduce(
      (n, r) => n + countMsg(r, "stale batch refused by the fence"),
      0,
    );
    const takeovers = allReplicas.reduce(
      (n, r) => n + countMsg(r, "slot held by another walsender; terminated it"),
      0,
    );
    return {
      elapsedMs: Date.now() - started,
      writer: {
        committed: sum((w) => w.committed),
        changes: sum((w) => w.changes),
        errors: sum((w) => w.errors),
      },
      appliedTransactions: counts.txs,
      appliedChanges: counts.changes,
      faults,
      terms: counts.terms,
      fencedBatches,
      takeovers,
      sourceRows: rows.n,
      mismatchedRows,
      wrongApplyCounts: apply.n,
      lsnRegressions: regress.lsn,
      tokenRegressions: regress.token,
      slotCaughtUp,
      drainMs,
      lagMetric,
      unexpectedExits,
      finalExitCodes,
      maxLogLines,
      maxRepeats,
      strayLines,
    };
  } finally {
    const logDir = process.env.TENURE_TEST_REPLICATION_LOGS;
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      for (const r of allReplicas)
        writeFileSync(join(logDir, `${r.holder}.log`), `${r.lines.join("\n")}\n`);
    }
    await Promise.all(writers.map((w) => w.stop().catch(() => {})));
    for (const r of allReplicas) {
      if (r.proc.exitCode === null && r.proc.signalCode === null) {
        r.proc.kill("SIGCONT");
        r.proc.kill("SIGKILL");
      }
    }
    await Promise.all(allReplicas.map((r) => r.exit));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function countMsg(r: Replica, msg: string): number {
  let n = 0;
  for (const l of r.lines) if (l.includes(`"msg":"${msg}"`)) n += 1;
  return n;
}
