import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";

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
 * `graceMs`; `exited` resolves when the command has ended.
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

  constructor(
    command: readonly string[],
    env: NodeJS.ProcessEnv,
    private readonly graceMs: number,
  ) {
    this.proc = spawn(process.execPath, [GUARD, String(graceMs), ...command], {
      detached: true,
      stdio: ["inherit", "inherit", "inherit", "ipc"],
      env,
    });
    // The guard's IPC channel must not keep tenure alive on its own.
    this.proc.channel?.unref();
    this.pid = this.proc.pid ?? -1;
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.done) return;
        this.done = true;
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
      this.signalGroup("SIGTERM");
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
