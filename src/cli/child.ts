import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { SPAWNED } from "./guard-protocol.js";

/** How a supervised command ended. */
export interface ChildExit {
  /** Exit code, or null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** True when Tenure asked it to stop (demotion, resignation, shutdown). */
  readonly stopped: boolean;
  /** True when it ignored SIGTERM and was killed after the grace period. */
  readonly killed: boolean;
  /** How long it ran, in ms. */
  readonly ranMs: number;
}

/** The exit status a shell would report: the code, or 128 + signal number. */
export function shellStatus(e: Pick<ChildExit, "code" | "signal">): number {
  if (e.code !== null) return e.code;
  return 128 + (e.signal ? (constants.signals[e.signal] ?? 0) : 0);
}

const GUARD = fileURLToPath(new URL("./guard.js", import.meta.url));

/**
 * One run of the command, in its own process group (through the guard, see
 * guard.ts). `stop()` sends SIGTERM to the whole group, then SIGKILL after
 * `graceMs`; `exited` resolves when the command has ended. A `stop()` before the
 * guard has spawned the command sends its SIGTERM once the guard says it has
 * (sent earlier it would reach the guard alone, and the command would run until
 * the SIGKILL); the grace period still counts from `stop()`.
 */
export class CommandRun {
  readonly pid: number;
  readonly exited: Promise<ChildExit>;
  private readonly proc: ChildProcess;
  private readonly startedAt = performance.now();
  private done = false;
  private stopping = false;
  private killed = false;
  private killTimer: NodeJS.Timeout | undefined;
  /** True once the guard has spawned the command (its `spawned` message). */
  private spawned = false;

  /** `guard` is the guard script to run; another one only in tests. */
  constructor(
    command: readonly string[],
    env: NodeJS.ProcessEnv,
    private readonly graceMs: number,
    guard: string = GUARD,
  ) {
    this.proc = spawn(process.execPath, [guard, String(graceMs), ...command], {
      detached: true,
      stdio: ["inherit", "inherit", "inherit", "ipc"],
      env,
    });
    // The guard's IPC channel must not keep tenure alive on its own.
    this.proc.channel?.unref();
    this.pid = this.proc.pid ?? -1;
    const onMessage = (m: unknown) => {
      if (m !== SPAWNED) return;
      this.proc.off("message", onMessage);
      this.spawned = true;
      if (this.stopping && !this.done && !this.killed) this.signalGroup("SIGTERM");
    };
    this.proc.on("message", onMessage);
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.done) return;
        this.done = true;
        this.proc.off("message", onMessage);
        clearTimeout(this.killTimer);
        // Leave nothing behind in the group once we asked it to stop.
        if (this.stopping) this.signalGroup("SIGKILL");
        resolve({
          code,
          signal,
          stopped: this.stopping,
          killed: this.killed,
          ranMs: performance.now() - this.startedAt,
        });
      };
      this.proc.on("exit", finish);
      this.proc.on("error", () => finish(126, null));
    });
  }

  /** True until the command has exited. */
  get running(): boolean {
    return !this.done;
  }

  /** SIGTERM to the group now, SIGKILL after the grace period. Idempotent; resolves on exit. */
  stop(): Promise<ChildExit> {
    if (!this.done && !this.stopping) {
      this.stopping = true;
      if (this.spawned) this.signalGroup("SIGTERM");
      this.killTimer = setTimeout(() => {
        this.killed = true;
        this.signalGroup("SIGKILL");
      }, this.graceMs);
    }
    return this.exited;
  }

  /** SIGKILL to the group now (second Ctrl-C). */
  kill(): void {
    this.stopping = true;
    this.killed = true;
    this.signalGroup("SIGKILL");
  }

  private signalGroup(sig: NodeJS.Signals): void {
    if (this.pid <= 0) return;
    try {
      process.kill(-this.pid, sig);
    } catch {
      // ESRCH: the group is already gone.
    }
  }
}
