/**
 * Child process of part 2: one leadership candidate. Prints JSON lines on
 * stdout (`ready`, `elected` with the host's monotonic time in ns, `stopping`,
 * `stopped`); a line `stop` on stdin stops it gracefully.
 *
 * Modes:
 * - `tenure`: createElector on the store with its defaults for the given ttl
 *   (renew every ttl/3, follower retry ttl/5, plus release notifications).
 * - `clientgo`: the client-go leaderelection loop emulated on the same Tenure
 *   store: everyone calls tryAcquireOrRenew every retryPeriod (followers with
 *   JitterUntil's factor 1.2), no notifications, release on cancel.
 * - `etcd-election`: etcd3's Election.campaign (lease keepalive, watch on the
 *   previous key), resign() on stop.
 */
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { createElector } from "../src/elector/index.js";
import { openStore } from "../src/open.js";
import type { LeaseRef } from "../src/store/types.js";
import { etcdHosts, nowNs, sleep } from "./lib/common.js";

export interface CandidateInput {
  mode: "tenure" | "clientgo" | "etcd-election";
  url: string;
  name: string;
  ttlMs: number;
  /** clientgo: the retry period. */
  retryMs: number;
}

const say = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const input = JSON.parse(process.argv[2] ?? "{}") as CandidateInput;
const holder = `cand-${process.pid}-${randomBytes(3).toString("hex")}`;

let stopFn: () => Promise<void> = async () => {};
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (line.trim() !== "stop") return;
  say({ ev: "stopping", t: nowNs().toString() });
  stopFn()
    .catch((e) => process.stderr.write(`stop failed: ${String(e)}\n`))
    .finally(() => {
      say({ ev: "stopped" });
      process.exit(0);
    });
});

async function tenure(): Promise<void> {
  const store = await openStore(input.url);
  const elector = createElector({ store, name: input.name, ttlMs: input.ttlMs, holderId: holder });
  elector.on("elected", () => say({ ev: "elected", t: nowNs().toString() }));
  stopFn = async () => {
    await elector.stop();
    await store.close();
  };
  await elector.start();
  say({ ev: "ready" });
}

async function clientgo(): Promise<void> {
  const store = await openStore(input.url);
  let lease: LeaseRef | null = null;
  let stopping = false;
  let loop: Promise<void> = Promise.resolve();
  stopFn = async () => {
    stopping = true;
    await loop;
    if (lease) await store.release(lease); // ReleaseOnCancel
    await store.close();
  };
  say({ ev: "ready" });
  loop = (async () => {
    while (!stopping) {
      try {
        if (lease) {
          const r = await store.renew(lease, input.ttlMs);
          if (!r.renewed) lease = null;
        } else {
          const r = await store.acquire(input.name, holder, input.ttlMs);
          if (r.acquired) {
            lease = r.lease;
            say({ ev: "elected", t: nowNs().toString() });
          }
        }
      } catch (e) {
        process.stderr.write(`clientgo: ${String(e)}\n`);
      }
      if (stopping) break;
      // client-go: the leader renews every RetryPeriod; a follower polls with
      // wait.JitterUntil(RetryPeriod, 1.2): RetryPeriod + rand·1.2·RetryPeriod.
      await sleep(lease ? input.retryMs : input.retryMs * (1 + Math.random() * 1.2));
    }
  })();
}

async function etcdElection(): Promise<void> {
  const { Etcd3 } = await import("etcd3");
  const client = new Etcd3({ hosts: etcdHosts(input.url) });
  const election = client.election(input.name, Math.max(1, Math.round(input.ttlMs / 1000)));
  const campaign = election.campaign(holder);
  campaign.on("elected", () => say({ ev: "elected", t: nowNs().toString() }));
  campaign.on("error", (e) => process.stderr.write(`campaign: ${String(e)}\n`));
  stopFn = async () => {
    await campaign.resign();
    client.close();
  };
  say({ ev: "ready" });
}

const modes = { tenure, clientgo, "etcd-election": etcdElection };
modes[input.mode]().catch((e) => {
  say({ ev: "error", message: String(e) });
  process.exit(1);
});
