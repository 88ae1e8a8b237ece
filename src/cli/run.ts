import { accessSync, constants as fsConstants, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { pause } from "../async.js";
import { backoffDelay } from "../backoff.js";
import { systemClock } from "../clock.js";
import { createElector, type Elector } from "../elector/index.js";
import { type DemotionReason, errorMessage, isTermEndedError } from "../errors.js";
import type { LeaderHooks } from "../leader/hooks.js";
import type { LogFields, Logger } from "../logger.js";
import type { ElectorStore, LeaderStore } from "../store/types.js";
import type { Term } from "../term.js";
import { type ChildExit, CommandRun, shellStatus } from "./child.js";
import { formatDuration } from "./duration.js";
import { CliExit, EXIT } from "./exit-codes.js";
import { CLI_DEFAULTS } from "./flags.js";

/** What `tenure run` does after the command exits. */
export type RestartPolicy = "on-failure" | "always" | "never";

/** Options of `tenure run` (flags, resolved). */
export interface RunOptions {
  name: string;
  /** Lease TTL. Default 15 s. */
  ttlMs: number;
  /** Time between SIGTERM and SIGKILL when stopping the command. Default 10 s. */
  graceMs: number;
  /** Run the command once as leader, then resign and exit with its code. Default false. */
  once: boolean;
  /** Wait while another process leads (true, default) or exit with EXIT.NOT_LEADER (false). */
  wait: boolean;
  /** Default `on-failure`. */
  restart: RestartPolicy;
  /** Failed starts in a row before the leader resigns. Default 5. */
  maxRestarts: number;
  /**
   * Terms in a row that ended in such a resignation before tenure gives up
   * and exits {@link EXIT.GAVE_UP}; 0 (default) never gives up.
   */
  maxTerms?: number;
  /** First restart delay; doubles per failure up to 30 s. Default 1 s. */
  restartDelayMs: number;
  /** Holder id in the store. Default `hostname:pid:random`. */
  holder?: string;
  /** Health/metrics HTTP port, if any. */
  healthPort?: number;
  healthHost: string;
  /** What the health port's `/readyz` requires: `reachable` (default) or `leader`. */
  readiness?: "reachable" | "leader";
  command: string[];
}

/** Key under which `--once` records a finished run (see docs/cli.md). */
export const ONCE_KEY = "tenure.once";
/** Longest delay between restarts of a failing command. */
export const RESTART_MAX_DELAY_MS = CLI_DEFAULTS.restartMaxDelayMs;
/** How often a leader re-checks its deadline while the command runs (F1: react right after a stall). */
const DEADLINE_CHECK_MS = 100;

/**
 * Checks the command can be found before campaigning, so a typo fails at once
 * instead of in a restart loop. Mirrors the shell: 127 not found, 126 not executable.
 */
export function checkCommand(cmd: string, env: NodeJS.ProcessEnv = process.env): void {
  const candidates = cmd.includes("/")
    ? [cmd]
    : (env.PATH ?? "").split(delimiter).map((d) => join(d || ".", cmd));
  let found = false;
  for (const p of candidates) {
    try {
      if (!statSync(p).isFile()) continue;
      found = true;
      accessSync(p, fsConstants.X_OK);
      return;
    } catch {
      // try the next one
    }
  }
  if (found) throw new CliExit(EXIT.CANNOT_EXECUTE, `command is not executable: ${cmd}`);
  throw new CliExit(EXIT.NOT_FOUND, `command not found: ${cmd}`);
}

/**
 * `tenure run`: campaigns for the lease and runs the command while leader.
 * Resolves with the process's exit code.
 */
export async function runCommand(
  store: ElectorStore,
  o: RunOptions,
  logger: Logger,
): Promise<number> {
  const elector = createElector({
    store,
    name: o.name,
    ttlMs: o.ttlMs,
    logger,
    ...(o.holder ? { holderId: o.holder } : {}),
    // Stopping the command (SIGTERM … SIGKILL) must finish before the lease is released.
    stopTimeoutMs: o.graceMs + 2000,
    // After resigning on a failing command, give the other hosts a full ttl to take over.
    resignCooldownMs: o.ttlMs,
  });
  const sup = new Supervisor(elector, store, o, logger);
  return sup.run();
}

class Supervisor implements LeaderHooks {
  private current: CommandRun | null = null;
  private finishing = false;
  private exitCode = EXIT.OK as number;
  private resolveDone!: (code: number) => void;
  private readonly done = new Promise<number>((r) => {
    this.resolveDone = r;
  });
  private everElected = false;
  /** Tokens of other holders seen while waiting (for `--once`). */
  private readonly seenTokens = new Set<bigint>();
  private signals = 0;
  /** Terms in a row whose command kept failing until the leader resigned. */
  private failedTerms = 0;
  private closeHealth: (() => Promise<void>) | null = null;

  constructor(
    private readonly elector: Elector,
    private readonly store: LeaderStore,
    private readonly o: RunOptions,
    private readonly log: Logger,
  ) {}

  async run(): Promise<number> {
    const { elector, o } = this;
    elector.attach(this);
    elector.on("leader", (info) => {
      if (!info || info.self) return;
      this.seenTokens.add(info.token);
      if (!o.wait && !this.everElected) {
        this.log.info("another process leads; not waiting (--no-wait)", {
          lease: o.name,
          holder: info.holder,
          token: info.token,
        });
        this.finish(EXIT.NOT_LEADER);
      }
    });
    const onSignal = (sig: NodeJS.Signals) => this.onSignal(sig);
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("SIGHUP", onSignal);
    try {
      if (o.healthPort !== undefined) this.closeHealth = await startHealth(elector, o, this.log);
      this.log.info("campaigning", {
        lease: o.name,
        holder: elector.holderId,
        ttl: formatDuration(o.ttlMs),
        command: o.command.join(" "),
      });
      await elector.start();
      return await this.done;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.off("SIGHUP", onSignal);
      await this.closeHealth?.().catch(() => {});
    }
  }

  // ------------------------------------------------------------ LeaderHooks

  onElected(term: Term): void {
    this.everElected = true;
    if (this.finishing) return;
    this.superviseTerm(term).catch((e) => {
      this.log.error("supervising the command failed", { lease: this.o.name, err: e });
      this.finish(EXIT.INTERNAL);
    });
  }

  async onTermEnded(_term: Term, _reason: DemotionReason): Promise<void> {
    // The abort listener has already sent SIGTERM; wait for the command to end.
    const c = this.current;
    if (c) await c.stop();
  }

  healthProblem(): string | null {
    return null;
  }

  async close(): Promise<void> {
    const c = this.current;
    if (c) await c.stop();
  }

  // ------------------------------------------------------------- the work

  private async superviseTerm(term: Term): Promise<void> {
    const { o, log } = this;
    const fields = { lease: o.name, token: term.token };
    // A command from an earlier term of this process may still be stopping.
    const previous = this.current;
    if (previous) await previous.stop();
    if (term.signal.aborted || this.finishing) return;
    if (o.once && (await this.alreadyRan(term))) return;
    let failures = 0;
    // F1: a timer that asks the elector (a clock check) so a stalled process that
    // resumes past its deadline demotes — and stops the command — right away.
    const deadlineCheck = setInterval(() => this.elector.enforceDeadline(), DEADLINE_CHECK_MS);
    try {
      while (!term.signal.aborted && !this.finishing) {
        const run = this.start(term);
        if (!run) return;
        const exit = await run.exited;
        if (this.current === run) this.current = null;
        if (exit.stopped || term.signal.aborted) return;
        const status = logExit(log, fields, run.pid, exit);
        if (o.once) {
          await this.recordOnce(term, status);
          this.finish(status);
          return;
        }
        if (o.restart === "never") {
          this.finish(status);
          return;
        }
        if (status === 0 && o.restart === "on-failure") {
          log.info("command finished; releasing the lease", fields);
          this.finish(EXIT.OK);
          return;
        }
        // A command that ran a good while before failing starts a fresh count.
        if (exit.ranMs >= Math.max(RESTART_MAX_DELAY_MS, o.ttlMs)) {
          failures = 0;
          this.failedTerms = 0;
        }
        if (status !== 0) failures += 1;
        if (failures > o.maxRestarts) {
          this.failedTerms += 1;
          const maxTerms = o.maxTerms ?? 0;
          if (maxTerms > 0 && this.failedTerms >= maxTerms) {
            log.error("command kept failing; giving up (--max-terms)", {
              ...fields,
              attempt: failures,
              terms: this.failedTerms,
              code: status,
            });
            this.finish(EXIT.GAVE_UP);
            return;
          }
          log.error("command keeps failing; resigning so another process can try", {
            ...fields,
            attempt: failures,
          });
          await this.elector.resignTerm(term);
          return;
        }
        if (!(await restartPause(log, fields, o.restartDelayMs, failures, term.signal))) return;
      }
    } finally {
      clearInterval(deadlineCheck);
    }
  }

  /** Spawns the command for `term`; it is stopped the moment the term's signal aborts. */
  private start(term: Term): CommandRun | null {
    if (!this.elector.isLeader() || this.elector.term() !== term) return null;
    const { o, log } = this;
    const run = new CommandRun(
      o.command,
      {
        ...process.env,
        TENURE_NAME: o.name,
        TENURE_TOKEN: term.token.toString(),
        TENURE_HOLDER: term.holder,
      },
      o.graceMs,
    );
    this.current = run;
    log.info("started command", { lease: o.name, token: term.token, pid: run.pid });
    const onAbort = () => {
      const reason = isTermEndedError(term.signal.reason) ? term.signal.reason.reason : "stopped";
      if (!run.running) return;
      log[reason === "lost" || reason === "expired" ? "warn" : "info"]("stopping command", {
        lease: o.name,
        token: term.token,
        pid: run.pid,
        reason,
        grace: formatDuration(o.graceMs),
      });
      run.stop();
    };
    term.signal.addEventListener("abort", onAbort, { once: true });
    run.exited.then(() => term.signal.removeEventListener("abort", onAbort));
    return run;
  }

  /** `--once`: true (and finishes) when a term this process waited on already ran the command. */
  private async alreadyRan(term: Term): Promise<boolean> {
    let rec: { value: string; token: bigint } | null = null;
    try {
      rec = await this.store.getFenced(this.o.name, ONCE_KEY);
    } catch (e) {
      this.log.warn("cannot read the --once record; running the command", {
        lease: this.o.name,
        err: errorMessage(e),
      });
    }
    if (!rec || !this.seenTokens.has(rec.token)) return false;
    let code: unknown;
    try {
      code = (JSON.parse(rec.value) as { code?: unknown }).code;
    } catch {}
    this.log.info(
      "the command already ran under a term this process waited on; not running it again",
      {
        lease: this.o.name,
        token: term.token,
        ranToken: rec.token,
        code,
      },
    );
    this.finish(EXIT.OK);
    return true;
  }

  private async recordOnce(term: Term, code: number): Promise<void> {
    const value = JSON.stringify({ holder: term.holder, code, at: new Date().toISOString() });
    try {
      await this.store.putFenced(term, ONCE_KEY, value);
    } catch (e) {
      this.log.warn("cannot record the --once run", { lease: this.o.name, err: errorMessage(e) });
    }
  }

  // -------------------------------------------------------------- shutdown

  private onSignal(sig: NodeJS.Signals): void {
    this.signals += 1;
    if (this.signals === 1) {
      this.log.info(`received ${sig}; stopping`, { lease: this.o.name });
      this.finish(EXIT.OK);
      return;
    }
    this.log.warn(`received ${sig} again; killing the command now`, { lease: this.o.name });
    this.current?.kill();
  }

  /** Stops the command (if running), resigns and stops campaigning, then resolves `run()`. */
  private finish(code: number): void {
    if (this.finishing) return;
    this.finishing = true;
    this.exitCode = code;
    const running = this.current;
    void (async () => {
      await this.elector.stop();
      if (running) {
        const exit: ChildExit = await running.stop();
        if (exit.stopped) this.exitCode = stopStatus(exit);
      }
      this.resolveDone(this.exitCode);
    })().catch((e) => {
      this.log.error("shutdown failed", { lease: this.o.name, err: e });
      this.resolveDone(EXIT.INTERNAL);
    });
  }
}

/** Logs how the command exited (info on status 0, else warn); its shell exit status. */
export function logExit(
  log: Logger,
  fields: LogFields,
  pid: number | undefined,
  exit: ChildExit,
): number {
  const status = shellStatus(exit);
  log[status === 0 ? "info" : "warn"]("command exited", {
    ...fields,
    pid,
    code: exit.code ?? undefined,
    signal: exit.signal ?? undefined,
    ran: formatDuration(exit.ranMs),
  });
  return status;
}

/**
 * Waits the backoff before restart attempt `failures + 1` (from `restartDelayMs`
 * up to RESTART_MAX_DELAY_MS, with jitter); false when `signal` aborted the wait.
 */
export async function restartPause(
  log: Logger,
  fields: LogFields,
  restartDelayMs: number,
  failures: number,
  signal: AbortSignal,
): Promise<boolean> {
  const delayMs = backoffDelay(Math.max(1, failures), {
    initialMs: restartDelayMs,
    maxMs: Math.max(restartDelayMs, RESTART_MAX_DELAY_MS),
    jitter: 0.2,
  });
  log.info("restarting command", { ...fields, attempt: failures + 1, delayMs });
  return pause(systemClock, delayMs, signal);
}

/** Exit status after Tenure stopped the command: 0 if it stopped cleanly on SIGTERM. */
function stopStatus(e: ChildExit): number {
  if (e.killed) return EXIT.KILLED;
  if (e.signal === "SIGTERM" || e.code === 0 || e.code === 143) return EXIT.OK;
  return shellStatus(e);
}

/** Starts the health/metrics endpoints (src/http, loaded only when asked for). */
async function startHealth(
  elector: Elector,
  o: RunOptions,
  log: Logger,
): Promise<() => Promise<void>> {
  const { serveHealth } = await import("../http/index.js");
  try {
    const server = await serveHealth([elector], {
      port: o.healthPort!,
      host: o.healthHost,
      readiness: o.readiness ?? "reachable",
    });
    log.info("health endpoints listening", {
      lease: o.name,
      host: o.healthHost,
      port: server.port,
    });
    return () => server.close();
  } catch (e) {
    throw new CliExit(
      EXIT.UNAVAILABLE,
      `--health-port: cannot listen on ${o.healthHost}:${o.healthPort}: ${errorMessage(e)}`,
    );
  }
}
