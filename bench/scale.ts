/**
 * Child process of part 3: N leases held by this one process, one elector per
 * lease (common ttl, default renew interval ttl/3), all on one store connection
 * set and so on one shared renewer (DESIGN §7). Counts store calls through a
 * counting wrapper (a `renewMany` batch is one call), and measures CPU
 * (process.cpuUsage) and memory (heapUsed/rss after GC) over a steady window.
 * Run with --expose-gc.
 */
import { createElector, type Elector } from "../src/elector/index.js";
import { openStore } from "../src/open.js";
import { acquirerFor, renewerFor } from "../src/renewal/index.js";
import type { LeaseStore } from "../src/store/types.js";
import { childMain, msSince, nowNs, round, sleep, uniqueName } from "./lib/common.js";

export interface ScaleInput {
  url: string;
  n: number;
  ttlMs: number;
  windowMs: number;
  /** Bound on getting all N elected. */
  startTimeoutMs: number;
}

export interface ScaleOutput {
  n: number;
  startMs: number;
  elected: number;
  heldAtEnd: number;
  storeCallsPerSec: number;
  /**
   * Requests the server actually received per second (Tenure coalesces and
   * batches store calls): commands sent by the `ioredis` clients (a Lua script
   * is one), queries sent by the `pg` clients, etcd's
   * `grpc_server_msg_received_total` (unary calls and keep-alive messages);
   * null for SQLite (in-process).
   */
  serverRequestsPerSec: number | null;
  /** Store calls of each kind during the window. */
  calls: Record<string, number>;
  /**
   * Renewal round trips (`renewMany` and `renew` calls) per renew interval
   * during the window; the target is ⌈N / batchSize⌉.
   */
  renewRoundTripsPerInterval: number;
  /** The shared renewer's batch size and what it sent during the window. */
  renewer: { batchSize: number; wakes: number; batches: number; sent: number };
  /**
   * The shared acquirer during start-up: acquire round trips (`acquireMany`
   * batches, or `acquire` calls without it) and requests sent.
   */
  acquirer: { batchSize: number; batches: number; sent: number; acquireCalls: number };
  /** Whether the store has renewMany (else the renewer calls renew per lease). */
  renewMany: boolean;
  cpuPercentOfCore: number;
  cpuUsPerLeasePerSec: number;
  heapBytesPerLease: number;
  rssBytesPerLease: number;
  demotions: number;
  errors: number;
}

const COUNTED = [
  "acquire",
  "acquireMany",
  "renew",
  "renewMany",
  "release",
  "read",
  "list",
  "putFenced",
  "getFenced",
] as const;

function counting(store: LeaseStore, calls: Record<string, number>): LeaseStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      if ((COUNTED as readonly (string | symbol)[]).includes(prop)) {
        return (...args: unknown[]) => {
          calls[prop as string] = (calls[prop as string] ?? 0) + 1;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}

/**
 * A counter of the requests the server behind `url` received, read before and
 * after the window; null where there is no server.
 */
async function serverRequests(url: string): Promise<(() => Promise<number>) | null> {
  if (url.startsWith("redis")) {
    // Every command the store's ioredis clients send (a Lua script is one).
    const { Redis } = await import("ioredis");
    const proto = Redis.prototype as unknown as { sendCommand: (...a: unknown[]) => unknown };
    const send = proto.sendCommand;
    let n = 0;
    proto.sendCommand = function (this: unknown, ...a: unknown[]) {
      n += 1;
      return send.apply(this, a);
    };
    return async () => n;
  }
  if (url.startsWith("etcd")) {
    const host = url.replace(/^etcd:\/\//, "").split(",")[0];
    return async () => {
      const text = await (await fetch(`http://${host}/metrics`)).text();
      let n = 0;
      for (const line of text.split("\n")) {
        if (line.startsWith("grpc_server_msg_received_total{")) n += Number(line.split(" ").pop());
      }
      return n;
    };
  }
  if (url.startsWith("postgres")) {
    // Every query of the store's pg.Pool clients is one round trip.
    const pg = (await import("pg")).default;
    const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
    const query = proto.query;
    let n = 0;
    proto.query = function (this: unknown, ...a: unknown[]) {
      n += 1;
      return query.apply(this, a);
    };
    return async () => n;
  }
  return null;
}

function mem(): { heap: number; rss: number } {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

async function main(input: ScaleInput): Promise<ScaleOutput> {
  const requests = await serverRequests(input.url);
  const raw = await openStore(input.url);
  const calls: Record<string, number> = {};
  const store = counting(raw, calls);
  const prefix = uniqueName("scale");
  // Warm the store (connections, prepared statements, scripts) before the baseline.
  await raw.read(`${prefix}-warm`);
  const before = mem();
  const electors: Elector[] = [];
  let demotions = 0;
  let errors = 0;
  let elected = 0;
  const t0 = nowNs();
  for (let i = 0; i < input.n; i++) {
    const e = createElector({ store, name: `${prefix}-${i}`, ttlMs: input.ttlMs });
    e.on("elected", () => void elected++);
    e.on("demoted", () => void demotions++);
    e.on("error", () => void errors++);
    electors.push(e);
  }
  await Promise.all(electors.map((e) => e.start()));
  while (elected < input.n && msSince(t0) < input.startTimeoutMs) await sleep(20);
  const startMs = msSince(t0);
  const acq = acquirerFor(store).stats();
  const acquirer = {
    batchSize: acquirerFor(store).batchSize,
    batches: acq.batches,
    sent: acq.sent,
    acquireCalls: (calls.acquire ?? 0) + (calls.acquireMany ?? 0),
  };
  // Let the start-up burst drain into steady renewals.
  await sleep(Math.min(1000, input.ttlMs / 3));
  const after = mem();
  const renewer = renewerFor(store);
  const s0 = { ...renewer.stats() };
  const c0 = { ...calls };
  const r0 = await requests?.();
  const cpu0 = process.cpuUsage();
  const w0 = nowNs();
  await sleep(input.windowMs);
  const cpu = process.cpuUsage(cpu0);
  const wallMs = msSince(w0);
  const s1 = { ...renewer.stats() };
  const r1 = await requests?.();
  const windowCalls: Record<string, number> = {};
  let total = 0;
  for (const k of Object.keys(calls)) {
    const d = (calls[k] ?? 0) - (c0[k] ?? 0);
    if (d) windowCalls[k] = d;
    total += d;
  }
  const heldAtEnd = electors.filter((e) => e.isLeader()).length;
  const cpuUs = cpu.user + cpu.system;
  const out: ScaleOutput = {
    n: input.n,
    startMs: round(startMs, 1),
    elected,
    heldAtEnd,
    storeCallsPerSec: round((total * 1000) / wallMs, 1),
    serverRequestsPerSec:
      r0 === undefined || r1 === undefined ? null : round(((r1 - r0) * 1000) / wallMs, 1),
    calls: windowCalls,
    renewRoundTripsPerInterval: round(
      ((windowCalls.renew ?? 0) + (windowCalls.renewMany ?? 0)) /
        (wallMs / (electors[0]?.options.renewIntervalMs ?? input.ttlMs / 3)),
      2,
    ),
    renewer: {
      batchSize: renewer.batchSize,
      wakes: s1.wakes - s0.wakes,
      batches: s1.batches - s0.batches,
      sent: s1.sent - s0.sent,
    },
    acquirer,
    renewMany: typeof raw.renewMany === "function",
    cpuPercentOfCore: round((cpuUs / 1000 / wallMs) * 100, 2),
    cpuUsPerLeasePerSec: round(cpuUs / input.n / (wallMs / 1000), 2),
    heapBytesPerLease: Math.round((after.heap - before.heap) / input.n),
    rssBytesPerLease: Math.round((after.rss - before.rss) / input.n),
    demotions,
    errors,
  };
  // Stop (release) within a bound; leftovers expire by ttl.
  await Promise.race([Promise.all(electors.map((e) => e.stop().catch(() => {}))), sleep(10_000)]);
  await raw.close().catch(() => {});
  return out;
}

await childMain(main);
