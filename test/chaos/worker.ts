/**
 * One candidate process of a chaos episode. Configured by the CHAOS_WORKER
 * environment variable (JSON, see {@link WorkerConfig}). Campaigns for one
 * lease and, while leader, ticks every `tickMs`: each tick prints a `tick` line
 * and writes one row to the fenced resource. Prints one JSON line per event on
 * stdout, stamped with CLOCK_MONOTONIC ns (`t`), which all processes share:
 * lead-start/renewed (with `until`, the end of the trust window), lead-end,
 * tick, log (every line the elector logs), state (on SIGUSR2), stopped.
 * SIGTERM: elector.stop() (graceful handoff), then exit 0.
 */
import pg from "pg";
import { createElector, openStore } from "../../src/index.js";
import type { Logger } from "../../src/logger.js";

export interface WorkerConfig {
  url: string;
  name: string;
  holder: string;
  ttlMs: number;
  retryMs: number;
  tickMs: number;
  /**
   * The fenced resource. `guard`: a table on `pgUrl` that keeps the largest
   * token it has seen and refuses lower ones (works with any lease store).
   * `store-fence`: rows written inside a transaction on the lease's own
   * PostgreSQL database, after the store's `fence(tx, term)`.
   */
  fence: { mode: "guard" | "store-fence"; pgUrl: string; table: string };
}

const cfg = JSON.parse(process.env.CHAOS_WORKER ?? "null") as WorkerConfig | null;
if (!cfg) {
  process.stderr.write("chaos worker: set CHAOS_WORKER to a JSON WorkerConfig\n");
  process.exit(64);
}
const now = () => process.hrtime.bigint();
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

const store = await openStore(cfg.url);
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

// The fenced resource: one client, reconnected when it breaks.
let client: pg.Client | null = null;
async function db(): Promise<pg.Client> {
  if (client) return client;
  const c = new pg.Client({
    connectionString: cfg!.fence.pgUrl.replace(/\?.*$/, ""),
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
const T = `"${cfg.fence.table}"`;
const G = `"${cfg.fence.table}_guard"`;
const fenceFn = (
  store as {
    fence?: (tx: unknown, term: { name: string; holder: string; token: bigint }) => Promise<void>;
  }
).fence;

async function fencedWrite(token: bigint, t: string): Promise<void> {
  let c: pg.Client;
  try {
    c = await db();
  } catch {
    out("write-error", { token: token.toString(), err: "connect" });
    return;
  }
  try {
    await c.query("BEGIN");
    if (cfg!.fence.mode === "store-fence") {
      if (!fenceFn) throw new Error("store has no fence()");
      await fenceFn.call(store, c, { name: cfg!.name, holder: cfg!.holder, token });
    } else {
      const r = await c.query(`SELECT max_token::text AS m FROM ${G} WHERE id = 1 FOR UPDATE`);
      if (BigInt(r.rows[0].m as string) > token) {
        await c.query("ROLLBACK");
        out("write-rejected", { token: token.toString() });
        return;
      }
      await c.query(`UPDATE ${G} SET max_token = $1 WHERE id = 1`, [token.toString()]);
    }
    await c.query(`INSERT INTO ${T} (token, pid, t) VALUES ($1, $2, $3)`, [
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

elector.every(
  cfg.tickMs,
  async (term) => {
    const t = now().toString();
    out("tick", { token: term.token.toString() });
    await fencedWrite(term.token, t);
  },
  { immediate: true },
);

process.on("SIGUSR2", () => {
  const h = elector.health();
  out("state", { state: h.state, leader: h.leader?.holder ?? null, healthy: h.healthy });
});
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await elector.stop();
  out("stopped");
  await store.close().catch(() => {});
  await client?.end().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
await elector.start();
out("started");
