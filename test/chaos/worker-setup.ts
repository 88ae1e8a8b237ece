/**
 * The set-up a chaos worker shares with a group chaos worker (worker.ts,
 * group-worker.ts): its config from CHAOS_WORKER, the host's CLOCK_MONOTONIC
 * clock, the JSON event line writer, the store under test (SQLite with the tx
 * hook when asked) and the `put-fenced` chain write of one lease.
 */
import { readFileSync } from "node:fs";
import { openStore } from "../../src/index.js";
import type { Logger } from "../../src/logger.js";
import type { DisposableLeaseStore } from "../../src/open.js";
import { CHAIN_KEY, chainValue, parseChainValue } from "./chain.js";
import { openHookedSqliteStore } from "./faults-sqlite-hook.js";

/** The worker's config, parsed from CHAOS_WORKER (JSON); exits 64 when it is not set. */
export function workerConfig<T>(what: string, type: string): T {
  const cfg = JSON.parse(process.env.CHAOS_WORKER ?? "null") as T | null;
  if (!cfg) {
    process.stderr.write(`${what}: set CHAOS_WORKER to a JSON ${type}\n`);
    process.exit(64);
  }
  return cfg;
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
/** The host's CLOCK_MONOTONIC in ns, also inside a time namespace (fault clock-skew). */
export const now = () => process.hrtime.bigint() - offsetNs;
/**
 * A recent time of the library's (default) clock (`performance.timeOrigin + performance.now()`,
 * ms), as {@link now} reads it. Converted as the time elapsed since, not through one offset
 * taken at start: `performance.now()` and `process.hrtime` drift apart here by about 0.25 ms
 * per second (seen on this VM), several ms over an episode.
 */
export const fromLibClock = (ms: number): bigint => {
  const lib = performance.timeOrigin + performance.now();
  return now() - BigInt(Math.round((lib - ms) * 1e6));
};

export type Out = (event: string, extra?: Record<string, unknown>) => void;

/** Prints one JSON event line of this process on stdout, stamped with {@link now}. */
export const lineWriter =
  (holder: string): Out =>
  (event, extra = {}) =>
    process.stdout.write(
      `${JSON.stringify({ pid: process.pid, holder, event, t: now().toString(), ...extra })}\n`,
    );

/** The store under test: with `txHook`, the SQLite store whose fenced write can stop inside its tx. */
export async function openWorkerStore(
  url: string,
  txHook: string | undefined,
  out: Out,
  logger?: Logger,
): Promise<{ store: DisposableLeaseStore; hooked: { close(): void } | null }> {
  const hooked = txHook ? await openHookedSqliteStore(url, txHook, () => out("in-tx")) : null;
  return { store: hooked?.store ?? (await openStore(url, logger ? { logger } : {})), hooked };
}

/** The store's `fence(tx, term)` (store-fence mode), if it has one. */
export const fenceOf = (store: DisposableLeaseStore) =>
  (
    store as {
      fence?: (tx: unknown, term: { name: string; holder: string; token: bigint }) => Promise<void>;
    }
  ).fence;

/**
 * One `put-fenced` write of lease `name`'s chain: reads the current value and
 * replaces it only if unchanged. The event to print (`wrote`,
 * `write-rejected`, `write-conflict`), the value written and the one before.
 */
export async function chainWrite(
  store: DisposableLeaseStore,
  name: string,
  holder: string,
  token: bigint,
  t: string,
): Promise<{ event: string; value: string; prev: string | null }> {
  const cur = await store.getFenced(name, CHAIN_KEY);
  const prev = cur === null ? null : parseChainValue(cur.value);
  if (cur !== null && prev === null) throw new Error(`not a chain value: ${cur.value}`);
  const value = chainValue(prev === null ? now() : prev.seq + 1n, token, process.pid, t);
  const r = await store.putFenced({ name, holder, token }, CHAIN_KEY, value, {
    expect: cur?.value ?? null,
  });
  const event = r.ok ? "wrote" : r.reason === "fenced" ? "write-rejected" : "write-conflict";
  return { event, value, prev: cur?.value ?? null };
}

/**
 * On SIGTERM or SIGINT (the first one): stops the elector or group with
 * `stop`, prints `stopped`, closes the store, its tx hook and the fence
 * client (`endClient`, read then: the worker reconnects it), and exits 0.
 */
export function exitOnSignals(
  out: Out,
  stop: () => Promise<void>,
  store: DisposableLeaseStore,
  hooked: { close(): void } | null,
  endClient: () => Promise<unknown> | undefined,
): void {
  let stopping = false;
  const onSignal = async () => {
    if (stopping) return;
    stopping = true;
    await stop();
    out("stopped");
    await store.close().catch(() => {});
    hooked?.close();
    await endClient()?.catch(() => {});
    process.exit(0);
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}
