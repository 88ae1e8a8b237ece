/**
 * One member process of a group chaos episode (test/chaos/group-harness.ts).
 * Configured by the CHAOS_WORKER environment variable (JSON, see
 * {@link GroupWorkerConfig}). Joins a group of `partitions` partitions with
 * `createGroup` and, for every partition it owns, ticks every `tickMs`
 * (`group.every`): each tick makes one fenced write of that partition
 * through the store's own fencing. Prints one compact JSON line per event on
 * stdout, stamped with CLOCK_MONOTONIC ns (`t`), shared by every process:
 *
 * - `lead-start` / `renewed` (`p`, `token`, `until`: end of that partition's
 *   trust window), `lead-end` (`p`, `token`, `reason`);
 * - `wrote` / `write-rejected` / `write-conflict` / `write-error` (`p`,
 *   `token`, `s`: when the tick started; `t`: when the store's answer came
 *   back; on a chain also `value` and `prev`): one line per tick, so the tick
 *   and its write are one line;
 * - `state` on SIGUSR2: `owned` (clock-checked `group.owned()`), `tokens`;
 * - `started`, `stopped`, `in-tx` (SQLite tx hook).
 *
 * Every renewal of every partition is recorded (about P·3 lines per ttl for
 * the whole fleet), not sampled: the trust-overlap check needs every window.
 * SIGTERM: group.stop() (hands every partition over), then exit 0.
 */
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { createGroup, type Elector } from "../../src/index.js";
import { createStreamLogger } from "../../src/logger.js";
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

export interface GroupWorkerConfig {
  url: string;
  /** Group name. */
  group: string;
  holder: string;
  partitions: number;
  ttlMs: number;
  tickMs: number;
  /** As WorkerConfig.fence (worker.ts); the PostgreSQL table has a `part` column. */
  fence: { mode: "store-fence"; pgUrl: string; table: string } | { mode: "put-fenced" };
  /** SQLite faults kill-in-tx / stop-in-tx (see WorkerConfig.txHook). */
  txHook?: string;
}

const cfg = workerConfig<GroupWorkerConfig>("chaos group worker", "GroupWorkerConfig");
const out = lineWriter(cfg.holder);
const errText = (v: unknown) => (v instanceof Error ? `${v.name}: ${v.message}` : String(v));

// TENURE_CHAOS_WORKER_LOG=DIR: the store's and the group's debug log, to DIR/HOLDER.log
// (for diagnosing an episode; the checker reads only stdout).
const logDir = process.env.TENURE_CHAOS_WORKER_LOG;
const logger = logDir
  ? createStreamLogger({
      stream: createWriteStream(join(logDir, `${cfg.holder.replace(/[^\w.-]/g, "_")}.log`)),
      level: "debug",
    })
  : undefined;
const { store, hooked } = await openWorkerStore(cfg.url, cfg.txHook, out, logger);
const group = createGroup({
  store,
  name: cfg.group,
  partitions: cfg.partitions,
  ttlMs: cfg.ttlMs,
  holderId: cfg.holder,
  ...(logger ? { logger } : {}),
});

/**
 * The elector of partition `p` (test-only look inside the group): its trust
 * window (`health().validForMs`) and its `renewed` event are what the checker
 * needs per partition, and the group does not publish them.
 */
function partitionElector(p: number): Elector {
  const g = group as unknown as {
    electors?: Map<number, Elector>;
    handingElector?: Map<number, Elector>;
  };
  // A partition being handed over has its elector in `handingElector`: should it be elected
  // there, its term must be recorded all the same.
  const e = g.electors?.get(p) ?? g.handingElector?.get(p);
  if (!e) throw new Error(`chaos group worker: no elector for partition ${p} inside the group`);
  return e;
}
const untilOf = (e: Elector) =>
  (now() + BigInt(Math.max(0, Math.floor(e.health().validForMs * 1e6)))).toString();

group.on("assigned", ({ partition: p, term }) => {
  const e = partitionElector(p);
  out("lead-start", { p, token: term.token.toString(), until: untilOf(e) });
  const off = e.on("renewed", (r) =>
    out("renewed", { p, token: r.token.toString(), until: untilOf(e) }),
  );
  term.signal.addEventListener("abort", () => off(), { once: true });
});
group.on("revoked", ({ partition: p, token, reason }) =>
  out("lead-end", { p, token: token.toString(), reason }),
);
group.on("error", () => {});

// store-fence: a small pool (ticks of many partitions write at once).
const pool =
  cfg.fence.mode === "store-fence"
    ? new pg.Pool({
        connectionString: cfg.fence.pgUrl.replace(/\?.*$/, ""),
        max: 4,
        query_timeout: Math.max(500, cfg.ttlMs),
        connectionTimeoutMillis: Math.max(500, cfg.ttlMs),
      })
    : null;
pool?.on("error", () => {});
const guarded = new WeakSet<pg.PoolClient>();
const fenceFn = fenceOf(store);

async function storeFenceWrite(
  table: string,
  p: number,
  token: bigint,
  s: string,
  g: string,
): Promise<void> {
  const tok = token.toString();
  let c: pg.PoolClient;
  try {
    c = await pool!.connect();
    // A checked-out client's errors (a server that ends the session) are not the pool's: handle them here.
    if (!guarded.has(c)) {
      guarded.add(c);
      c.on("error", () => {});
    }
  } catch {
    out("write-error", { p, token: tok, s, g, err: "connect" });
    return;
  }
  let broken = false;
  try {
    await c.query("BEGIN");
    if (!fenceFn) throw new Error("store has no fence()");
    await fenceFn.call(store, c, { name: group.partitionLease(p), holder: cfg!.holder, token });
    await c.query(`INSERT INTO "${table}" (part, token, pid, t) VALUES ($1, $2, $3, $4)`, [
      p,
      tok,
      process.pid,
      s,
    ]);
    await c.query("COMMIT");
    out("wrote", { p, token: tok, s, g });
  } catch (e) {
    out((e as Error).name === "FencedError" ? "write-rejected" : "write-error", {
      p,
      token: tok,
      s,
      g,
      err: errText(e),
    });
    try {
      await c.query("ROLLBACK");
    } catch {
      broken = true;
    }
  } finally {
    c.release(broken);
  }
}

async function putFencedWrite(p: number, token: bigint, s: string, g: string): Promise<void> {
  const tok = token.toString();
  const name = group.partitionLease(p);
  try {
    const r = await chainWrite(store, name, cfg.holder, token, s);
    out(r.event, {
      p,
      token: tok,
      s,
      g,
      ...(r.event === "wrote" ? { value: r.value } : {}),
      prev: r.prev,
    });
  } catch (e) {
    out("write-error", { p, token: tok, s, g, err: errText(e) });
  }
}

group.every(
  cfg.tickMs,
  async (term, p, info) => {
    const s = now().toString();
    // When the library's leadership check for this tick began: a process frozen between that
    // check and the line above (SIGSTOP) reads `s` after it resumes, past its trust window.
    const g = fromLibClock(info.checkedAt).toString();
    const f = cfg.fence;
    if (f.mode === "store-fence") await storeFenceWrite(f.table, p, term.token, s, g);
    else await putFencedWrite(p, term.token, s, g);
  },
  { immediate: true },
);

process.on("SIGUSR2", () => {
  const owned = group.owned();
  // Test-only look inside the group, for the report of a fleet that does not balance: is this
  // process a member now (its member lease trusted), what it campaigns for, whom its last view shows.
  const g = group as unknown as {
    member?: Elector | null;
    handing?: Map<number, unknown>;
  };
  out("state", {
    owned,
    tokens: owned.map((p) => group.term(p)?.token.toString() ?? null),
    wall: Date.now(),
    member: g.member?.isLeader() ?? false,
    memberState: g.member?.health().state ?? null,
    assigned: group.assigned().length,
    handing: g.handing?.size ?? 0,
    view: group.view()?.members.map((m) => m.holder) ?? null,
  });
});
exitOnSignals(
  out,
  () => group.stop(),
  store,
  hooked,
  () => pool?.end(),
);
await group.start();
out("started");
