/**
 * One group member in its own OS process, for the separate-process group
 * tests and the groups bench (driven by group-fleet.ts over IPC).
 *
 * argv[2]: JSON `{ url, group, partitions, ttlMs, holder }`. Reports
 * `{ ev: "assigned" | "revoked", p, token, t }` for every partition it gains
 * or loses (`t`: wall-clock ms with sub-ms precision), `{ ev: "started" }`
 * once joined. Answers `{ cmd: "stop" }` with `{ ev: "stopping", t }`, hands
 * every partition over (`group.stop()`), then `{ ev: "stopped", t }` and exits;
 * `{ cmd: "stats" }` with `{ ev: "stats", calls }`: store calls by method.
 */
import { createGroup } from "../../src/group/index.js";
import { openStore } from "../../src/open.js";
import type { LeaseStore } from "../../src/store/types.js";

export interface WorkerConfig {
  url: string;
  group: string;
  partitions: number;
  ttlMs: number;
  holder: string;
}

export type WorkerEvent =
  | { ev: "started"; t: number }
  | { ev: "assigned"; p: number; token: string; t: number }
  | { ev: "revoked"; p: number; token: string; reason: string; t: number }
  | { ev: "stopping"; t: number }
  | { ev: "stopped"; t: number }
  | { ev: "stats"; calls: Record<string, number> }
  | { ev: "error"; message: string };

/** Wall-clock ms, sub-ms precision, comparable across processes on one host. */
export const now = (): number => performance.timeOrigin + performance.now();

/** Counts calls per method of `store` (one call is one store request). */
function counted(store: LeaseStore, calls: Record<string, number>): LeaseStore {
  return new Proxy(store, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver);
      if (typeof v !== "function" || typeof key !== "string") return v;
      return (...args: unknown[]) => {
        calls[key] = (calls[key] ?? 0) + 1;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as WorkerConfig;
  const send = (m: WorkerEvent) => process.send?.(m);
  const calls: Record<string, number> = {};
  const raw = await openStore(cfg.url);
  const store = counted(raw, calls);
  const group = createGroup({
    store,
    name: cfg.group,
    partitions: cfg.partitions,
    ttlMs: cfg.ttlMs,
    holderId: cfg.holder,
  });
  group.on("assigned", ({ partition, term }) =>
    send({ ev: "assigned", p: partition, token: term.token.toString(), t: now() }),
  );
  group.on("revoked", ({ partition, token, reason }) =>
    send({ ev: "revoked", p: partition, token: token.toString(), reason, t: now() }),
  );
  group.on("error", () => {});
  process.on("message", (m: { cmd: string }) => {
    if (m.cmd === "stats") send({ ev: "stats", calls: { ...calls } });
    if (m.cmd === "stop") {
      send({ ev: "stopping", t: now() });
      void group.stop().then(async () => {
        send({ ev: "stopped", t: now() });
        await raw.close().catch(() => {});
        process.disconnect?.();
        process.exit(0);
      });
    }
  });
  await group.start();
  send({ ev: "started", t: now() });
}

// Run only as a worker process (the fleet imports the types).
if (process.send && process.argv[2]?.startsWith("{")) {
  main().catch((e) => {
    process.send?.({ ev: "error", message: String(e) });
    process.exit(1);
  });
}
