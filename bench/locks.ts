/**
 * Child process of the lock part: measures every lock peer of ONE server and
 * that server's floor (its cheapest round trip) interleaved, in short rounds
 * (A B C D, B C D A, …) for the whole duration, first with one client, then
 * with N clients contending for one lock. Prints one JSON line.
 *   node dist/bench/locks.js '{"server":"redis","peers":[...],...}'
 */
import { childMain, msSince, nowNs, sleep, uniqueName } from "./lib/common.js";
import { FLOORS, LOCK_PEERS, type LockClient } from "./lib/peers.js";
import { type PeerSeries, quantile, type RoundFigure, roundOrder } from "./lib/rounds.js";

export interface LockInput {
  server: string;
  /** Lock peer ids of this server (see LOCK_PEERS); the floor is added when `floor` is set. */
  peers: string[];
  /** Measure the server's floor as one more interleaved peer. */
  floor: boolean;
  ttlMs: number;
  /** Length of one peer's turn. */
  roundMs: number;
  /** Recorded rounds per peer and phase. */
  rounds: number;
  /** Unrecorded rounds per peer before each phase. */
  warmupRounds: number;
  clients: number;
  retryMinMs: number;
  retryMaxMs: number;
  sqlitePath: string;
}

export interface PhaseOutput {
  /** Peer order of each round (round r is the peer list rotated by r). */
  order: string[][];
  peers: PeerSeries[];
}

export interface LockOutput {
  server: string;
  /** Id of the floor peer in `peers` (one round trip), when measured. */
  floorId?: string;
  /** Ids of every floor probe in `peers` (the main one first). */
  floorIds?: string[];
  uncontended: PhaseOutput;
  contended: PhaseOutput;
}

/** The floor as a "peer" whose cycle is one round trip. */
export const floorId = (server: string) => `floor-${server}`;

/** The floor probes of a server, main floor first, with their peer ids. */
export const floorProbes = (server: string) =>
  FLOORS.filter((f) => f.server === server).map((f) => ({ ...f, id: f.id ?? floorId(server) }));

interface Contestant {
  id: string;
  clients: LockClient[];
  error?: string;
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

/** One turn of one peer: `clients` loops on one key for `roundMs`. */
async function turn(
  p: Contestant,
  n: number,
  key: string,
  input: LockInput,
): Promise<RoundFigure | null> {
  const tries = { failed: 0 };
  const lat: number[] = [];
  const cpu0 = process.cpuUsage();
  const start = nowNs();
  await Promise.all(
    p.clients.slice(0, n).map(async (c) => {
      while (msSince(start) < input.roundMs) {
        const t = nowNs();
        await cycle(c, key, input, tries);
        lat.push(msSince(t));
      }
    }),
  );
  const elapsed = msSince(start);
  const cpu = process.cpuUsage(cpu0);
  if (lat.length === 0) return null;
  return {
    cycles: lat.length,
    opsPerSec: (lat.length * 1000) / elapsed,
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    cpuUsPerOp: (cpu.user + cpu.system) / lat.length,
    ...(n > 1 ? { failedTriesPerCycle: tries.failed / lat.length } : {}),
  };
}

async function phase(ps: Contestant[], n: number, input: LockInput): Promise<PhaseOutput> {
  const keys = new Map(ps.map((p) => [p.id, uniqueName(n > 1 ? "c" : "u")]));
  const series = new Map<string, PeerSeries>(ps.map((p) => [p.id, { id: p.id, rounds: [] }]));
  const order: string[][] = [];
  const total = input.warmupRounds + input.rounds;
  for (let r = 0; r < total; r++) {
    const ids: string[] = [];
    for (const p of roundOrder(ps, r)) {
      const s = series.get(p.id) as PeerSeries;
      if (p.error) {
        if (r >= input.warmupRounds) s.rounds.push(null);
        continue;
      }
      let fig: RoundFigure | null = null;
      try {
        fig = await turn(p, n, keys.get(p.id) as string, input);
      } catch (e) {
        p.error = `${(e as Error).name}: ${(e as Error).message}`;
        s.error = p.error;
      }
      if (r >= input.warmupRounds) {
        s.rounds.push(fig);
        ids.push(p.id);
      }
    }
    if (r >= input.warmupRounds) order.push(ids);
  }
  return { order, peers: ps.map((p) => series.get(p.id) as PeerSeries) };
}

async function open(input: LockInput): Promise<Contestant[]> {
  const ctx = { sqlitePath: input.sqlitePath };
  const out: Contestant[] = [];
  const n = Math.max(1, input.clients);
  if (input.floor) {
    const probes = floorProbes(input.server);
    if (!probes.length) throw new Error(`no floor for ${input.server}`);
    for (const probe of probes) {
      const c: Contestant = { id: probe.id, clients: [] };
      try {
        for (let i = 0; i < n; i++) {
          const p = await probe.open(ctx);
          c.clients.push({
            tryAcquire: async () => {
              await p.once();
              return true;
            },
            release: async () => {},
            close: () => p.close(),
          });
        }
      } catch (e) {
        c.error = `${(e as Error).name}: ${(e as Error).message}`;
      }
      out.push(c);
    }
  }
  for (const id of input.peers) {
    const peer = LOCK_PEERS.find((p) => p.id === id);
    if (!peer) throw new Error(`unknown peer ${id}`);
    const c: Contestant = { id, clients: [] };
    try {
      for (let i = 0; i < n; i++) c.clients.push(await peer.open(input.ttlMs, ctx));
    } catch (e) {
      c.error = `${(e as Error).name}: ${(e as Error).message}`;
    }
    out.push(c);
  }
  return out;
}

async function main(input: LockInput): Promise<LockOutput> {
  const ps = await open(input);
  try {
    const uncontended = await phase(ps, 1, input);
    const contended = await phase(ps, input.clients, input);
    for (const p of ps) {
      if (!p.error) continue;
      for (const s of [uncontended, contended]) {
        const x = s.peers.find((y) => y.id === p.id);
        if (x) x.error = p.error;
      }
    }
    return {
      server: input.server,
      ...(input.floor
        ? {
            floorId: floorId(input.server),
            floorIds: floorProbes(input.server).map((f) => f.id),
          }
        : {}),
      uncontended,
      contended,
    };
  } finally {
    await Promise.allSettled(ps.flatMap((p) => p.clients.map((c) => c.close())));
  }
}

await childMain(main);
