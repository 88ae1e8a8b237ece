/**
 * Part 2: failover. For one configuration, starts 3 candidate processes on one
 * lease, waits for a leader, lets it settle for a random part of the ttl, then
 * (a) SIGKILLs the leader and times until another candidate reports `elected`,
 * (b) gracefully stops the new leader and times from its `stopping` to the next
 * `elected`. Times come from the host's monotonic clock, shared by all processes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { CandidateInput } from "./candidate.js";
import { benchScript, nowNs, round, type Stats, sleep, stats, uniqueName } from "./lib/common.js";

export interface FailoverConfig {
  id: string;
  backend: string;
  mode: CandidateInput["mode"];
  url: string;
  ttlMs: number;
  retryMs: number;
  /** For the doc. */
  describe: string;
}

export interface FailoverResult {
  id: string;
  backend: string;
  mode: string;
  ttlMs: number;
  retryMs: number;
  describe: string;
  killMs: Stats;
  gracefulMs: Stats;
  killSamples: number[];
  gracefulSamples: number[];
  errors: string[];
}

interface Cand {
  proc: ChildProcess;
  events: Array<{ ev: string; t?: string; message?: string }>;
  waiters: Array<() => void>;
  stderr: string;
}

function startCandidate(input: CandidateInput): Cand {
  const proc = spawn(process.execPath, [benchScript("candidate.js"), JSON.stringify(input)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const c: Cand = { proc, events: [], waiters: [], stderr: "" };
  proc.stderr?.on("data", (d) => {
    c.stderr = (c.stderr + String(d)).slice(-2000);
  });
  createInterface({ input: proc.stdout! }).on("line", (line) => {
    try {
      c.events.push(JSON.parse(line));
    } catch {
      return;
    }
    for (const w of c.waiters.splice(0)) w();
  });
  proc.on("exit", () => {
    c.events.push({ ev: "exit" });
    for (const w of c.waiters.splice(0)) w();
  });
  return c;
}

/** Waits until `pred` finds an event in any of `cands`; returns it with its candidate. */
async function waitEvent(
  cands: Cand[],
  pred: (e: Cand["events"][number], c: Cand) => boolean,
  timeoutMs: number,
  what: string,
): Promise<{ c: Cand; e: Cand["events"][number] }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const c of cands) {
      const e = c.events.find((x) => pred(x, c));
      if (e) return { c, e };
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const err = cands
        .map((c) => c.stderr.trim())
        .filter(Boolean)
        .join(" | ");
      throw new Error(`timed out waiting for ${what}${err ? `: ${err.slice(0, 400)}` : ""}`);
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, left);
      for (const c of cands)
        c.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
    });
  }
}

function electedAfter(t0: bigint, exclude: Cand) {
  return (e: Cand["events"][number], c: Cand) =>
    c !== exclude && e.ev === "elected" && BigInt(e.t ?? "0") >= t0;
}

async function oneRepetition(
  cfg: FailoverConfig,
  out: { kill: number[]; graceful: number[] },
): Promise<void> {
  const input: CandidateInput = {
    mode: cfg.mode,
    url: cfg.url,
    name: uniqueName("fo"),
    ttlMs: cfg.ttlMs,
    retryMs: cfg.retryMs,
  };
  const cands = [startCandidate(input), startCandidate(input), startCandidate(input)];
  const limit = cfg.ttlMs * 5 + 15_000;
  try {
    for (const c of cands)
      await waitEvent([c], (e) => e.ev === "ready" || e.ev === "error", limit, "ready");
    const bad = cands.flatMap((c) => c.events.filter((e) => e.ev === "error"));
    if (bad.length) throw new Error(bad[0]?.message ?? "candidate failed");
    const first = await waitEvent(cands, (e) => e.ev === "elected", limit, "a first leader");
    // Let followers learn the leader, then strike at a random phase of the renew cycle.
    await sleep(cfg.ttlMs * (0.5 + Math.random() * 0.5));
    const t0 = nowNs();
    first.c.proc.kill("SIGKILL");
    const second = await waitEvent(
      cands,
      electedAfter(t0, first.c),
      limit,
      "a leader after SIGKILL",
    );
    out.kill.push(round(Number(BigInt(second.e.t ?? "0") - t0) / 1e6));

    await sleep(cfg.ttlMs * (0.5 + Math.random() * 0.5));
    second.c.proc.stdin?.write("stop\n");
    const stopping = await waitEvent([second.c], (e) => e.ev === "stopping", limit, "stopping");
    const t1 = BigInt(stopping.e.t ?? "0");
    const third = await waitEvent(
      cands.filter((c) => c !== first.c),
      electedAfter(t1, second.c),
      limit,
      "a leader after a graceful stop",
    );
    out.graceful.push(round(Number(BigInt(third.e.t ?? "0") - t1) / 1e6));
    await waitEvent([second.c], (e) => e.ev === "exit", limit, "the stopped leader to exit");
  } finally {
    for (const c of cands)
      if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill("SIGKILL");
    await Promise.all(
      cands.map((c) =>
        c.proc.exitCode !== null || c.proc.signalCode !== null
          ? null
          : waitEvent([c], (e) => e.ev === "exit", 5000, "exit").catch(() => null),
      ),
    );
  }
}

export async function runFailover(cfg: FailoverConfig, reps: number): Promise<FailoverResult> {
  const out = { kill: [] as number[], graceful: [] as number[] };
  const errors: string[] = [];
  for (let i = 0; i < reps; i++) {
    try {
      await oneRepetition(cfg, out);
    } catch (e) {
      errors.push(String((e as Error).message ?? e));
    }
  }
  return {
    id: cfg.id,
    backend: cfg.backend,
    mode: cfg.mode,
    ttlMs: cfg.ttlMs,
    retryMs: cfg.retryMs,
    describe: cfg.describe,
    killMs: stats(out.kill),
    gracefulMs: stats(out.graceful),
    killSamples: out.kill,
    gracefulSamples: out.graceful,
    errors,
  };
}
