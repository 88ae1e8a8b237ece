/**
 * A fleet of group members, one OS process each (group-worker.ts), and what
 * they report: who owns which partition (by their `assigned`/`revoked`
 * events), when, with which token. For the separate-process group tests and
 * the groups bench.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { WorkerConfig, WorkerEvent } from "./group-worker.js";

const WORKER = fileURLToPath(new URL("./group-worker.js", import.meta.url));

export interface Member {
  readonly id: string;
  readonly proc: ChildProcess;
  readonly started: Promise<number>;
  readonly exited: Promise<void>;
  alive: boolean;
}

/** Gaining `p` at `t` by `id` with `token`. */
export interface Assignment {
  readonly id: string;
  readonly p: number;
  readonly token: bigint;
  readonly t: number;
}

export class GroupFleet {
  readonly members = new Map<string, Member>();
  /** Current owner of each partition by the events seen. */
  readonly owner = new Map<number, string>();
  readonly tokens = new Map<number, bigint>();
  /** Every assignment, in arrival order. */
  readonly log: Assignment[] = [];
  readonly errors: string[] = [];
  private readonly waiters = new Map<string, (e: WorkerEvent) => void>();

  constructor(private readonly base: Omit<WorkerConfig, "holder">) {}

  /** Starts member `id`; `started` resolves (wall-clock ms) once it has joined. */
  spawn(id: string): Member {
    const cfg: WorkerConfig = { ...this.base, holder: id };
    const proc = fork(WORKER, [JSON.stringify(cfg)], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let resolveStarted!: (t: number) => void;
    let rejectStarted!: (e: Error) => void;
    const started = new Promise<number>((res, rej) => {
      resolveStarted = res;
      rejectStarted = rej;
    });
    const m: Member = {
      id,
      proc,
      started,
      alive: true,
      exited: new Promise((r) =>
        proc.on("exit", () => {
          m.alive = false;
          const why = this.errors.filter((e) => e.startsWith(`${id}: `)).join("; ");
          rejectStarted(new Error(`member ${id} exited before joining${why ? ` (${why})` : ""}`));
          r();
        }),
      ),
    };
    started.catch(() => {});
    proc.on("message", (e: WorkerEvent) => {
      if (e.ev === "started") resolveStarted(e.t);
      else if (e.ev === "assigned") {
        this.owner.set(e.p, id);
        this.tokens.set(e.p, BigInt(e.token));
        this.log.push({ id, p: e.p, token: BigInt(e.token), t: e.t });
      } else if (e.ev === "revoked") {
        if (this.owner.get(e.p) === id) this.owner.delete(e.p);
      } else if (e.ev === "error") this.errors.push(`${id}: ${e.message}`);
      this.waiters.get(`${id}:${e.ev}`)?.(e);
    });
    this.members.set(id, m);
    return m;
  }

  /** Ids of the members still running. */
  live(): string[] {
    return [...this.members.values()].filter((m) => m.alive).map((m) => m.id);
  }

  /** Partitions owned by each of `ids`, as counts. */
  counts(ids: string[] = this.live()): Map<string, number> {
    const out = new Map(ids.map((id) => [id, 0]));
    for (const id of this.owner.values()) if (out.has(id)) out.set(id, out.get(id)! + 1);
    return out;
  }

  /** True when every partition is owned by one of `ids`, each ⌊P/M⌋ or ⌈P/M⌉. */
  balanced(ids: string[] = this.live(), partitions = this.base.partitions): boolean {
    const c = this.counts(ids);
    const total = [...c.values()].reduce((a, b) => a + b, 0);
    const lo = Math.floor(partitions / ids.length);
    const hi = Math.ceil(partitions / ids.length);
    return total === partitions && [...c.values()].every((n) => n >= lo && n <= hi);
  }

  /** The last assignment of partition `p`. */
  last(p: number): Assignment | undefined {
    for (let i = this.log.length - 1; i >= 0; i--) if (this.log[i]!.p === p) return this.log[i];
    return undefined;
  }

  /** Partitions `id` owns now. */
  ownedBy(id: string): number[] {
    return [...this.owner].filter(([, o]) => o === id).map(([p]) => p);
  }

  /** SIGKILLs member `id` (no release, no goodbye); its partitions stay held until they expire. */
  async kill(id: string): Promise<number> {
    const m = this.members.get(id)!;
    const t = performance.timeOrigin + performance.now();
    m.proc.kill("SIGKILL");
    await m.exited;
    for (const [p, o] of this.owner) if (o === id) this.owner.delete(p);
    return t;
  }

  /** Graceful stop of `id`: resolves with when it began and ended (wall-clock ms). */
  async stop(id: string): Promise<{ stopping: number; stopped: number }> {
    const m = this.members.get(id)!;
    const stopping = this.next(id, "stopping");
    const stopped = this.next(id, "stopped");
    m.proc.send({ cmd: "stop" });
    const a = (await stopping) as { t: number };
    const b = (await stopped) as { t: number };
    await m.exited;
    return { stopping: a.t, stopped: b.t };
  }

  /** Store calls by method of member `id` so far. */
  async stats(id: string): Promise<Record<string, number>> {
    const m = this.members.get(id)!;
    const r = this.next(id, "stats");
    m.proc.send({ cmd: "stats" });
    return ((await r) as { calls: Record<string, number> }).calls;
  }

  private next(id: string, ev: string): Promise<WorkerEvent> {
    return new Promise((resolve) => {
      this.waiters.set(`${id}:${ev}`, (e) => {
        this.waiters.delete(`${id}:${ev}`);
        resolve(e);
      });
    });
  }

  /** SIGKILLs every member still running. */
  async close(): Promise<void> {
    for (const m of this.members.values()) if (m.alive) m.proc.kill("SIGKILL");
    await Promise.all([...this.members.values()].map((m) => m.exited));
  }
}

/** The `q`-quantile (0–1) of `xs`, nearest rank. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
