/**
 * One candidate process of a chaos episode. Configured by the CHAOS_WORKER
 * environment variable (JSON, see {@link WorkerConfig}). Campaigns for one
 * lease and, while leader, ticks every `tickMs`: each tick prints a `tick` line
 * and makes one fenced write through the store's own fencing. Prints one JSON
 * line per event on stdout, stamped with CLOCK_MONOTONIC ns (`t`), which all
 * processes share: lead-start/renewed (with `until`, the end of the trust
 * window), lead-end, tick (with `g`, when the leadership check began), wrote / write-rejected / write-conflict /
 * write-error (stamped when the store's answer came back), log (every line the
 * elector logs), state (on SIGUSR2), stopped.
 * SIGTERM: elector.stop() (graceful handoff), then exit 0.
 * A worker in a time namespace (fault clock-skew) stamps with the host's
 * CLOCK_MONOTONIC all the same: its namespace's offset is taken off.
 */
import pg from "pg";
import { createElector } from "../../src/index.js";
import type { Logger } from "../../src/logger.js";
import {
  chainWrite,
  exitOnSignals,
  fenceOf,
  fromLibClock,
  lineWriter,
  now,
  openWorkerStore,
  workerConfig,
} from "./worker-setup.js";

export interface WorkerConfig {
  url: string;
  name: string;
  holder: string;
  ttlMs: number;
  retryMs: number;
  tickMs: number;
  /**
   * The fenced resource; the store under test does the fencing.
   * `store-fence`: rows written inside a transaction on the lease's own
   * PostgreSQL database (`pgUrl`, `table`), after the store's `fence(tx, term)`.
   * `put-fenced`: a compare-and-set chain on one key of the lease
   * (`CHAIN_KEY` of ./chain.ts) with the store's `putFenced`: each write reads the
   * current value and replaces it only if it is unchanged, so the accepted
   * writes form one chain in commit order (see `chainValue`).
   */
  fence: { mode: "store-fence"; pgUrl: string; table: string } | { mode: "put-fenced" };
  /**
   * SQLite only (faults kill-in-tx, stop-in-tx): while this file exists, the
   * store's fenced write stops inside its write transaction, after its row is
   * written and before COMMIT (see ./faults-sqlite-hook.ts).
   */
  txHook?: string;
}

const cfg = workerConfig<WorkerConfig>("chaos worker", "WorkerConfig");
const out = lineWriter(cfg.holder);

function errText(v: unknown): string {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  return typeof v === "string" ? v : "";
}
function debugFields(f: Record<string, unknown> | undefined): Record<string, string> {
  const r: Record<string, string> = {};
  for (const [k, v] of Object.entries(f ?? {})) r[k] = v instanceof Error ? errText(v) : String(v);
  return r;
}
const log =
  (level: string) =>
  (msg: string, fields?: Record<string, unknown>): void => {
    // Identity of a line: level, message and error text (times and counters vary).
    const key = `${level} ${msg} ${errText(fields?.err)}`.trim();
    out("log", { level, key, ...(process.env.CHAOS_DEBUG ? { fields: debugFields(fields) } : {}) });
  };
const logger: Logger = {
  debug: log("debug"),
  info: log("info"),
  warn: log("warn"),
  error: log("error"),
};

// CHAOS_DEBUG: the store's own log lines too (reconnects, subscriber), with their fields.
const { store, hooked } = await openWorkerStore(
  cfg.url,
  cfg.txHook,
  out,
  process.env.CHAOS_DEBUG ? logger : undefined,
);
const elector = createElector({
  store,
  name: cfg.name,
  holderId: cfg.holder,
  ttlMs: cfg.ttlMs,
  retryMs: cfg.retryMs,
  logger,
});
const until = () =>
  (now() + BigInt(Math.max(0, Math.floor(elector.health().validForMs * 1e6)))).toString();
elector.on("elected", (t) => out("lead-start", { token: t.token.toString(), until: until() }));
elector.on("renewed", (r) => out("renewed", { token: r.token.toString(), until: until() }));
elector.on("demoted", (d) => out("lead-end", { token: d.token.toString(), reason: d.reason }));

// store-fence: one client, reconnected when it breaks.
let client: pg.Client | null = null;
async function db(pgUrl: string): Promise<pg.Client> {
  if (client) return client;
  const c = new pg.Client({
    connectionString: pgUrl.replace(/\?.*$/, ""),
    query_timeout: Math.max(500, cfg!.ttlMs),
    connectionTimeoutMillis: Math.max(500, cfg!.ttlMs),
  });
  c.on("error", () => {
    if (client === c) client = null;
  });
  await c.connect();
  client = c;
  return c;
}
const fenceFn = fenceOf(store);

async function storeFenceWrite(
  f: { pgUrl: string; table: string },
  token: bigint,
  t: string,
): Promise<void> {
  let c: pg.Client;
  try {
    c = await db(f.pgUrl);
  } catch {
    out("write-error", { token: token.toString(), err: "connect" });
    return;
  }
  try {
    await c.query("BEGIN");
    if (!fenceFn) throw new Error("store has no fence()");
    await fenceFn.call(store, c, { name: cfg!.name, holder: cfg!.holder, token });
    await c.query(`INSERT INTO "${f.table}" (token, pid, t) VALUES ($1, $2, $3)`, [
      token.toString(),
      process.pid,
      t,
    ]);
    await c.query("COMMIT");
    out("wrote", { token: token.toString() });
  } catch (e) {
    out((e as Error).name === "FencedError" ? "write-rejected" : "write-error", {
      token: token.toString(),
      err: errText(e),
    });
    try {
      await c.query("ROLLBACK");
    } catch {
      client = null;
      c.end().catch(() => {});
    }
  }
}

async function putFencedWrite(token: bigint, t: string): Promise<void> {
  const tok = token.toString();
  try {
    const r = await chainWrite(store, cfg.name, cfg.holder, token, t);
    out(r.event, { token: tok, ...(r.event === "wrote" ? { value: r.value } : {}), prev: r.prev });
  } catch (e) {
    out("write-error", { token: tok, err: errText(e) });
  }
}

elector.every(
  cfg.tickMs,
  async (term, info) => {
    const t = now().toString();
    // `g`: when the library's leadership check for this tick began. A process
    // frozen (SIGSTOP) between that check and this line prints after it
    // resumes, past its trust window; the checker judges the tick at `g`.
    out("tick", { token: term.token.toString(), g: fromLibClock(info.checkedAt).toString() });
    const f = cfg.fence;
    if (f.mode === "store-fence") await storeFenceWrite(f, term.token, t);
    else await putFencedWrite(term.token, t);
  },
  { immediate: true },
);

process.on("SIGUSR2", () => {
  const h = elector.health();
  out("state", {
    state: h.state,
    leader: h.leader?.holder ?? null,
    token: h.token?.toString() ?? null,
    healthy: h.healthy,
    wall: Date.now(),
  });
});
exitOnSignals(
  out,
  () => elector.stop(),
  store,
  hooked,
  () => client?.end(),
);
await elector.start();
out("started");
