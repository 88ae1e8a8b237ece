/**
 * Micro bench beside the scale bench: renewing N held leases with ONE
 * `renewMany` call versus N single `renew` calls issued at once (what N
 * electors would do; the stores coalesce some of those themselves). Prints
 * the median wall time of each over a few rounds and their ratio, per backend.
 * Run: `npm run build && node dist/bench/renew-many.js [N…] [backend…]` (default
 * 1000 10000, every backend);
 * store URLs from TENURE_TEST_* / .services/env like the tests.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../src/open.js";
import type { LeaseRef, LeaseStore } from "../src/store/types.js";
import { SERVICES } from "../test/helpers/services.js";

const ROUNDS = 5;
const TTL = 60_000;

async function acquireAll(s: LeaseStore, prefix: string, n: number): Promise<LeaseRef[]> {
  const out: LeaseRef[] = [];
  for (let i = 0; i < n; i += 200) {
    const rs = await Promise.all(
      Array.from({ length: Math.min(200, n - i) }, (_, j) =>
        s.acquire(`${prefix}-${i + j}`, "bench", TTL),
      ),
    );
    for (const r of rs) {
      if (!r.acquired) throw new Error(`not acquired: ${JSON.stringify(r.current)}`);
      out.push(r.lease);
    }
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const ns = args.map(Number).filter((n) => n > 0);
  const only = args.filter((a) => !/^\d+$/.test(a));
  const sizes = ns.length > 0 ? ns : [1000, 10_000];
  const dir = mkdtempSync(join(tmpdir(), "tenure-bench-rm-"));
  const backends: [string, string | undefined][] = [
    ["redis", SERVICES.redis],
    ["postgres", SERVICES.postgres],
    ["sqlite", `sqlite:${join(dir, "leases.db")}`],
    ["etcd", SERVICES.etcd],
  ];
  console.log("backend   N       renewMany ms   N× renew ms   ratio (single / batch)");
  for (const [name, url] of backends) {
    if (only.length > 0 && !only.includes(name)) continue;
    if (!url) {
      console.log(`${name.padEnd(9)} (not configured)`);
      continue;
    }
    let store: LeaseStore;
    try {
      store = await openStore(url);
    } catch (e) {
      console.log(`${name.padEnd(9)} (unavailable: ${(e as Error).message})`);
      continue;
    }
    try {
      for (const n of sizes) {
        const leases = await acquireAll(store, `bench-rm-${process.pid}-${n}`, n);
        const items = leases.map((lease) => ({ lease, ttlMs: TTL }));
        await store.renewMany!(items); // warm-up (scripts, sessions)
        const batch: number[] = [];
        const single: number[] = [];
        for (let r = 0; r < ROUNDS; r++) {
          batch.push(
            await time(async () => {
              const res = await store.renewMany!(items);
              if (!res.every((x) => x.renewed)) throw new Error("a batch lost a lease");
            }),
          );
          single.push(
            await time(async () => {
              const res = await Promise.all(leases.map((l) => store.renew(l, TTL)));
              if (!res.every((x) => x.renewed)) throw new Error("a renewal lost a lease");
            }),
          );
        }
        const b = median(batch);
        const s = median(single);
        console.log(
          `${name.padEnd(9)} ${String(n).padEnd(7)} ${b.toFixed(1).padStart(12)}   ${s.toFixed(1).padStart(11)}   ${(s / b).toFixed(1).padStart(6)}×`,
        );
        for (let i = 0; i < leases.length; i += 200) {
          await Promise.all(leases.slice(i, i + 200).map((l) => store.release(l)));
        }
      }
    } finally {
      await store.close();
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

await main();
