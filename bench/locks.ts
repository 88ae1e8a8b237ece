/**
 * Child process of part 1 and part 4: measures one lock peer (uncontended and
 * with N contending clients) or one server's floor, prints one JSON line.
 *   node dist/bench/locks.js '{"peer":"redlock-v5",...}'
 */
import { childMain, msSince, nowNs, type Stats, sleep, stats, uniqueName } from "./lib/common.js";
import { FLOORS, LOCK_PEERS, type LockClient } from "./lib/peers.js";

export interface LockInput {
  peer?: string;
  floor?: string;
  ttlMs: number;
  warmup: number;
  uncontendedMs: number;
  contendedMs: number;
  clients: number;
  retryMinMs: number;
  retryMaxMs: number;
  sqlitePath: string;
  maxSamples: number;
}

export interface LockRun {
  cycles: number;
  opsPerSec: number;
  latencyMs: Stats;
  /** Failed tries per successful cycle (contended only). */
  failedTriesPerCycle?: number;
  /** Cycles of the slowest and fastest client (contended only). */
  perClientMin?: number;
  perClientMax?: number;
}

export interface LockOutput {
  uncontended: LockRun;
  contended: LockRun;
}

export interface FloorOutput {
  latencyMs: Stats;
  opsPerSec: number;
}

async function cycle(c: LockClient, key: string, input: LockInput, tries: { failed: number }) {
  for (;;) {
    const h = await c.tryAcquire(key);
    if (h !== null) {
      await c.release(h);
      return;
    }
    tries.failed++;
    await sleep(input.retryMinMs + Math.random() * (input.retryMaxMs - input.retryMinMs));
  }
}

async function uncontended(c: LockClient, input: LockInput): Promise<LockRun> {
  const key = uniqueName("u");
  const tries = { failed: 0 };
  for (let i = 0; i < input.warmup; i++) await cycle(c, key, input, tries);
  if (tries.failed > 0)
    throw new Error(`uncontended lock was busy during warm-up (${tries.failed} failed tries)`);
  const lat: number[] = [];
  const start = nowNs();
  while (msSince(start) < input.uncontendedMs && lat.length < input.maxSamples) {
    const t = nowNs();
    await cycle(c, key, input, tries);
    lat.push(msSince(t));
  }
  const elapsed = msSince(start);
  return { cycles: lat.length, opsPerSec: (lat.length * 1000) / elapsed, latencyMs: stats(lat) };
}

async function contended(clients: LockClient[], input: LockInput): Promise<LockRun> {
  const key = uniqueName("c");
  const tries = { failed: 0 };
  const lat: number[] = [];
  const perClient = clients.map(() => 0);
  let stop = false;
  const start = nowNs();
  await Promise.all(
    clients.map(async (c, i) => {
      while (!stop) {
        const t = nowNs();
        await cycle(c, key, input, tries);
        lat.push(msSince(t));
        perClient[i] = (perClient[i] ?? 0) + 1;
        if (msSince(start) >= input.contendedMs || lat.length >= input.maxSamples) stop = true;
      }
    }),
  );
  const elapsed = msSince(start);
  return {
    cycles: lat.length,
    opsPerSec: (lat.length * 1000) / elapsed,
    latencyMs: stats(lat),
    failedTriesPerCycle: lat.length ? tries.failed / lat.length : 0,
    perClientMin: Math.min(...perClient),
    perClientMax: Math.max(...perClient),
  };
}

async function floor(input: LockInput): Promise<FloorOutput> {
  const probe = FLOORS.find((f) => f.server === input.floor);
  if (!probe) throw new Error(`unknown floor ${input.floor}`);
  const p = await probe.open({ sqlitePath: input.sqlitePath });
  try {
    for (let i = 0; i < input.warmup; i++) await p.once();
    const lat: number[] = [];
    const start = nowNs();
    while (msSince(start) < input.uncontendedMs && lat.length < input.maxSamples) {
      const t = nowNs();
      await p.once();
      lat.push(msSince(t));
    }
    return { latencyMs: stats(lat), opsPerSec: (lat.length * 1000) / msSince(start) };
  } finally {
    await p.close();
  }
}

async function main(input: LockInput): Promise<LockOutput | FloorOutput> {
  if (input.floor) return floor(input);
  const peer = LOCK_PEERS.find((p) => p.id === input.peer);
  if (!peer) throw new Error(`unknown peer ${input.peer}`);
  const ctx = { sqlitePath: input.sqlitePath };
  const one = await peer.open(input.ttlMs, ctx);
  let u: LockRun;
  try {
    u = await uncontended(one, input);
  } finally {
    await one.close();
  }
  const many: LockClient[] = [];
  try {
    for (let i = 0; i < input.clients; i++) many.push(await peer.open(input.ttlMs, ctx));
    const c = await contended(many, input);
    return { uncontended: u, contended: c };
  } finally {
    await Promise.all(many.map((m) => m.close().catch(() => {})));
  }
}

await childMain(main);
