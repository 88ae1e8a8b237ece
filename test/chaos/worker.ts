/**
 * One candidate process of a chaos episode. Configured by the CHAOS_WORKER
 * environment variable (JSON, see {@link WorkerConfig}). Campaigns for one
 * lease and, while leader, ticks every `tickMs`: each tick prints a `tick` line
 * and makes one fenced write through the store's own fencing. Prints one JSON
 * line per event on stdout, stamped with CLOCK_MONOTONIC ns (`t`), which all
 * processes share: lead-start/renewed (with `until`, the end of the trust
 * window), lead-end, tick, wrote / write-rejected / write-conflict /
 * write-error (stamped when the store's answer came back), log (every line the
 * elector logs), state (on SIGUSR2), stopped.
 * SIGTERM: elector.stop() (graceful handoff), then exit 0.
 * A worker in a time namespace (fault clock-skew) stamps with the host's
 * CLOCK_MONOTONIC all the same: its namespace's offset is taken off.
 */
import { readFileSync } from "node:fs";
import pg from "pg";
import { createElector, openStore } from "../../src/index.js";
import type { Logger } from "../../src/logger.js";
import { CHAIN_KEY, chainValue, parseChainValue } from "./chain.js";
import { openHookedSqliteStore } from "./faults-sqlite-hook.js";

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

const cfg = JSON.parse(process.env.CHAOS_WORKER ?? "null") as WorkerConfig | null;
if (!cfg) {
  process.stderr.write("chaos worker: set CHAOS_WORKER to a JSON WorkerConfig\n");
  process.exit(64);
}
/** This process's time-namespace offset of CLOCK_MONOTONIC in ns (0 outside one). */
function timensOffsetNs(): bigint {
  try {
    const m = /^\s*(?:monotonic|1)\s+(-?\d+)\s+(\d+)/m.exec(
      readFileSync("/proc/self/timens_offsets", "utf8"),
    );
    return m ? BigInt(m[1]!) * 1_000_000_000n + BigInt(m[2]!) : 0n;
  } catch {
    return 0n;
  }
}
const offsetNs = timensOffsetNs();
const now = () => process.hrtime.bigint() - offsetNs;
const out = (event: string, extra: Record<string, unknown> = {}) =>
  process.stdout.write(
    `${JSON.stringify({ pid: process.pid, holder: cfg.holder, event, t: now().toString(), ...extra })}\n`,
  );

function errText(v: unknown): string {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  return typeof v === "string" ? v : "";
}
const log =
  (level: string) =>
  (msg: string, fields?: Record<string, unknown>): void => {
    // Identity of a line: level, message and error text (times and counters vary).
    const key = `${level} ${msg} ${errText(fields?.err)}`.trim();
    out("log", { level, key });
  };
const logger: Logger = {
  debug: log("debug"),
  info: log("info"),
  warn: log("warn"),
  error: log("error"),
};

const hooked = cfg.txHook
  ? await openHookedSqliteStore(cfg.url, cfg.txHook, () => out("in-tx"))
  : null;
const store = hooked?.store ?? (await openStore(cfg.url));
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
const fenceFn = (
  store as {
    fence?: (tx: unknown, term: { name: string; holder: string; token: bigint }) => Promise<void>;
  }
).fence;

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
    const cur = await store.getFenced(cfg!.name, CHAIN_KEY);
    const prev = cur === null ? null : parseChainValue(cur.value);
    if (cur !== null && prev === null) throw new Error(`not a chain value: ${cur.value}`);
    const value = chainValue(prev === null ? now() : prev.seq + 1n, token, process.pid, t);
    const r = await store.putFenced(
      { name: cfg!.name, holder: cfg!.holder, token },
      CHAIN_KEY,
      value,
      {
        expect: cur?.value ?? null,
      },
    );
    const prevValue = cur?.value ?? null;
    if (r.ok) out("wrote", { token: tok, value, prev: prevValue });
    else if (r.reason === "fenced") out("write-rejected", { token: tok, prev: prevValue });
    else out("write-conflict", { token: tok, prev: prevValue });
  } catch (e) {
    out("write-error", { token: tok, err: errText(e) });
  }
}

elector.every(
  cfg.tickMs,
  async (term) => {
    const t = now().toString();
    out("tick", { token: term.token.toString() });
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
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await elector.stop();
  out("stopped");
  await store.close().catch(() => {});
  hooked?.close();
  await client?.end().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
await elector.start();
out("started");
