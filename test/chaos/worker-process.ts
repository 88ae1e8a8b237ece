/**
 * One worker process of a chaos episode and the JSON lines it printed: the
 * spawn and stop plumbing shared by a single-lease episode's candidates
 * (harness.ts, worker.ts) and a group episode's members (group-harness.ts,
 * group-worker.ts). What "leading" means is each kind's own.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Launch } from "./faults-sqlite.js";

export abstract class WorkerProcess<L extends { readonly event: string; readonly t: string }> {
  readonly lines: L[] = [];
  readonly proc: ChildProcess;
  stderr = "";
  paused = false;
  stopping = false;
  /** Spawns `script` (under `launch`'s prefix and env) with its config in CHAOS_WORKER. */
  constructor(script: string, cfg: unknown, launch?: Launch) {
    const argv = [...(launch?.prefix ?? []), process.execPath, script];
    this.proc = spawn(argv[0]!, argv.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...launch?.env, CHAOS_WORKER: JSON.stringify(cfg) },
    });
    let buf = "";
    this.proc.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf("\n");
      while (i >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (l.trim()) {
          try {
            this.lines.push(JSON.parse(l) as L);
          } catch {
            this.stderr += `unparsable line: ${l}\n`;
          }
        }
        i = buf.indexOf("\n");
      }
    });
    this.proc.stderr!.on("data", (d: Buffer) => {
      if (this.stderr.length < 20_000) this.stderr += d.toString();
    });
  }
  get pid(): number {
    return this.proc.pid!;
  }
  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
  /** Whether this process leads (a lease, or some partition), by what it printed last. */
  abstract leading(): boolean;
  has(event: string, after = 0n): boolean {
    return this.lines.some((l) => l.event === event && BigInt(l.t) >= after);
  }
  /**
   * A violation line when the process exited non-zero, else undefined: the
   * first line naming an error and the stack lines after it (a crash's cause
   * is in the stack, not in the source line Node prints first).
   */
  crashReport(): string | undefined {
    const code = this.proc.exitCode;
    if (code === null || code === 0) return undefined;
    const lines = this.stderr.split("\n");
    const at = lines.findIndex((l) => /Error|error/.test(l));
    const cause =
      at < 0
        ? ""
        : lines
            .slice(at, at + 12)
            .map((l) => l.trim())
            .filter((l) => l !== "" && !/^\^+$/.test(l))
            .join(" | ")
            .slice(0, 1500);
    return `pid ${this.pid} crashed with exit code ${code}: ${cause}`;
  }
  exited(): Promise<void> {
    if (!this.alive) return Promise.resolve();
    return new Promise((r) => this.proc.once("exit", () => r()));
  }
}
