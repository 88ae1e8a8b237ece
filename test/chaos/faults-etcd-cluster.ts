/**
 * Faults of the `etcd-cluster` chaos backend: a 3-member etcd cluster on
 * loopback (test/helpers/chaos-servers.ts EtcdCluster), each member's client
 * port behind its own fault proxy, and Tenure connected to all three
 * (`etcd://p1,p2,p3`). Unlike the `etcd` backend's faults (which hit every
 * proxy at once or restart one member), these hit one member the way a
 * cluster loses one:
 *
 * - `kill-raft-leader`: the member that is raft leader (asked through the
 *   maintenance status API) is SIGKILLed; the other two elect a new one and
 *   keep serving; after a while it is restarted with its data dir.
 * - `partition-member`: one member's proxy black-holes both ways (the member
 *   still talks to its peers: only the clients lose it), then heals.
 * - `rolling-restart`: every member in turn is stopped (SIGTERM, etcd's
 *   graceful stop that hands raft leadership over, or SIGKILL), kept down for
 *   a moment and restarted, waiting until the cluster is healthy before the
 *   next, while the candidates keep renewing and writing.
 */
import type { EtcdCluster } from "../helpers/chaos-servers.js";
import type { FaultProxy } from "../helpers/fault-proxy.js";

export const ETCD_CLUSTER_FAULTS = [
  "kill-raft-leader",
  "partition-member",
  "rolling-restart",
] as const;
export type EtcdClusterFault = (typeof ETCD_CLUSTER_FAULTS)[number];

export function isEtcdClusterFault(f: string): f is EtcdClusterFault {
  return (ETCD_CLUSTER_FAULTS as readonly string[]).includes(f);
}

/** What the harness needs from one fault: when it began and healed, and what it did. */
export interface ClusterFaultRun {
  faultAt: bigint;
  healAt: bigint;
  detail: string;
}

const now = () => process.hrtime.bigint();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface MemberStatus {
  memberId: string;
  leaderId: string;
}

/** `Maintenance.Status` of one member through etcd's gRPC gateway (`/v3/maintenance/status`). */
async function status(clientPort: number): Promise<MemberStatus | null> {
  try {
    const r = await fetch(`http://127.0.0.1:${clientPort}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(1000),
    });
    if (!r.ok) return null;
    const j = (await r.json()) as { header?: { member_id?: string }; leader?: string };
    if (!j.header?.member_id || !j.leader || j.leader === "0") return null;
    return { memberId: j.header.member_id, leaderId: j.leader };
  } catch {
    return null;
  }
}

/**
 * Index of the member that is raft leader, as every running member reports
 * it (the same leader on all of them); polled up to `timeoutMs`.
 */
export async function raftLeader(cluster: EtcdCluster, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = cluster.members.map((m, i) => ({ m, i })).filter((x) => x.m.proc);
    const st = await Promise.all(running.map((x) => status(x.m.client)));
    const leaders = new Set(st.map((s) => s?.leaderId));
    if (st.every(Boolean) && leaders.size === 1) {
      const k = st.findIndex((s) => s!.memberId === s!.leaderId);
      if (k >= 0) return running[k]!.i;
    }
    if (Date.now() > deadline)
      throw new Error(`no raft leader agreed by every running etcd member within ${timeoutMs} ms`);
    await sleep(50); // a bounded poll
  }
}

/** Runs one fault on the cluster; every member runs and every proxy is healed when it returns. */
export async function runEtcdClusterFault(
  fault: EtcdClusterFault,
  cluster: EtcdCluster,
  proxies: readonly FaultProxy[],
  ttlMs: number,
  r: () => number,
): Promise<ClusterFaultRun> {
  const n = cluster.members.length;
  try {
    switch (fault) {
      case "kill-raft-leader": {
        const i = await raftLeader(cluster);
        const down = Math.round(ttlMs * (0.5 + r()));
        const faultAt = now();
        await cluster.stopMember(i, "SIGKILL");
        const t0 = Date.now();
        const next = await raftLeader(cluster);
        const electedMs = Date.now() - t0;
        await sleep(Math.max(0, down - (Date.now() - t0))); // the fault's length
        await cluster.startMember(i);
        return {
          faultAt,
          healAt: now(),
          detail: `SIGKILL raft leader m${i}; m${next} led raft after ${electedMs} ms; m${i} restarted with its data after ${down} ms`,
        };
      }
      case "partition-member": {
        const i = Math.floor(r() * n);
        const hold = Math.round(ttlMs * (1.5 + r()));
        const raft = await raftLeader(cluster);
        const faultAt = now();
        proxies[i]!.blackhole();
        await sleep(hold); // the fault's length
        proxies[i]!.heal();
        return {
          faultAt,
          healAt: now(),
          detail: `clients cut off from m${i}${i === raft ? " (the raft leader)" : ""} (black hole both ways) for ${hold} ms`,
        };
      }
      case "rolling-restart": {
        const first = Math.floor(r() * n);
        const signal = r() < 0.5 ? "SIGTERM" : "SIGKILL";
        const steps: string[] = [];
        const faultAt = now();
        for (let k = 0; k < n; k++) {
          const i = (first + k) % n;
          const raft = await raftLeader(cluster);
          const down = Math.round(ttlMs * (0.2 + 0.5 * r()));
          await cluster.stopMember(i, signal);
          await sleep(down); // how long the member stays down
          await cluster.startMember(i);
          steps.push(`m${i}${i === raft ? " (raft leader)" : ""} down ${down} ms`);
        }
        return {
          faultAt,
          healAt: now(),
          detail: `rolling restart (${signal}) one member at a time: ${steps.join(", ")}`,
        };
      }
    }
    throw new Error(`unknown etcd-cluster fault ${String(fault)}`);
  } finally {
    for (const p of proxies) p.heal();
    for (let i = 0; i < n; i++) if (!cluster.members[i]!.proc) await cluster.startMember(i);
  }
}
