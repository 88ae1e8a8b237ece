/**
 * `tenure run --group NAME --partitions P -- CMD`: joins the group NAME and
 * runs one CMD per partition this process owns. Each CMD gets the partition's
 * own fencing token; it is stopped (SIGTERM to its process group, SIGKILL
 * after --grace) before its partition's lease is released. See docs/cli.md.
 */
import { isConfigError } from "../errors.js";
import { createGroup, type Group } from "../group/index.js";
import type { Logger } from "../logger.js";
import type { LeaseStore } from "../store/types.js";
import type { Term } from "../term.js";
import { CommandRun } from "./child.js";
import { formatDuration } from "./duration.js";
import { EXIT, UsageError } from "./exit-codes.js";
import { logExit, RESTART_MAX_DELAY_MS, restartPause } from "./run.js";

/** Options of `tenure run --group` (flags, resolved). */
export interface GroupRunOptions {
  group: string;
  partitions: number;
  weight: number;
  ttlMs: number;
  graceMs: number;
  /** First restart delay of a partition's CMD that exited; doubles up to 30 s. */
  restartDelayMs: number;
  holder?: string;
  command: string[];
}

/** How often every owned partition's deadline is checked (as `tenure run` does for its lease). */
const DEADLINE_CHECK_MS = 100;

/** The flag a group option came from, for usage errors. */
const FLAG_OF: Record<string, string> = {
  name: "--group",
  partitions: "--partitions",
  weight: "--weight",
  holderId: "--holder",
  ttlMs: "--ttl",
};

/** Runs until SIGINT/SIGTERM; resolves with the exit code. */
export async function runGroupCommand(
  store: LeaseStore,
  o: GroupRunOptions,
  log: Logger,
): Promise<number> {
  let group: Group;
  try {
    group = createGroup({
      store,
      name: o.group,
      partitions: o.partitions,
      weight: o.weight,
      ttlMs: o.ttlMs,
      logger: log,
      // Stopping a partition's CMD (SIGTERM … SIGKILL) finishes before its lease is released.
      stopTimeoutMs: o.graceMs + 2000,
      ...(o.holder ? { holderId: o.holder } : {}),
    });
  } catch (e) {
    throw flagError(e);
  }
  const workers = new Set<PartitionCommand>();
  group.service<PartitionCommand>({
    name: "command",
    start: (term, partition) => {
      const w = new PartitionCommand(o, term, partition, log);
      workers.add(w);
      void w.exited.then(() => workers.delete(w));
      return w;
    },
    stop: (_reason, { value }) => value.stop(),
    stopTimeoutMs: o.graceMs + 2000,
  });
  group.on("assigned", ({ partition, term }) =>
    log.info("partition assigned", { lease: term.name, partition, token: term.token }),
  );
  group.on("revoked", ({ partition, token, reason }) =>
    log.info("partition revoked", { lease: o.group, partition, token, reason }),
  );
  let deadlineCheck: NodeJS.Timeout | undefined;
  let signals = 0;
  let stopping: Promise<void> | null = null;
  let resolveSignal!: () => void;
  const signalled = new Promise<void>((r) => {
    resolveSignal = r;
  });
  const onSignal = (sig: NodeJS.Signals) => {
    signals += 1;
    if (signals === 1) {
      log.info(`received ${sig}; stopping every partition's command and handing over`, {
        lease: o.group,
      });
      resolveSignal();
      return;
    }
    log.warn(`received ${sig} again; killing the commands now`, { lease: o.group });
    for (const w of workers) w.kill();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);
  try {
    log.info("joining group", {
      lease: o.group,
      holder: group.holderId,
      partitions: o.partitions,
      ttl: formatDuration(o.ttlMs),
      command: o.command.join(" "),
    });
    try {
      await group.start();
    } catch (e) {
      throw flagError(e);
    }
    // F1, as for one lease: owned() clock-checks every partition, so a stalled process that
    // resumes past a partition's deadline demotes it — and stops its CMD — right away.
    deadlineCheck = setInterval(() => group.owned(), DEADLINE_CHECK_MS);
    await signalled;
    stopping = group.stop();
    await stopping;
    return EXIT.OK;
  } finally {
    clearInterval(deadlineCheck);
    if (!stopping) await group.stop().catch(() => {});
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
  }
}

/** A group's ConfigError as a usage error naming the flag. */
function flagError(e: unknown): unknown {
  if (!isConfigError(e)) return e;
  return new UsageError(`${FLAG_OF[e.field] ?? e.field}: ${e.detail}`);
}

/**
 * The CMD of one owned partition: started at once, restarted (with a doubling
 * delay) whenever it exits on its own, until `stop()`.
 */
class PartitionCommand {
  private current: CommandRun | null = null;
  private readonly ac = new AbortController();
  readonly exited: Promise<void>;

  constructor(
    private readonly o: GroupRunOptions,
    private readonly term: Term,
    private readonly partition: number,
    private readonly log: Logger,
  ) {
    this.exited = this.loop();
  }

  private async loop(): Promise<void> {
    const { o, term, partition, log } = this;
    const fields = { lease: term.name, partition, token: term.token };
    let failures = 0;
    while (!this.ac.signal.aborted) {
      const run = new CommandRun(
        o.command,
        {
          ...process.env,
          TENURE_NAME: term.name,
          TENURE_GROUP: o.group,
          TENURE_PARTITION: String(partition),
          TENURE_PARTITIONS: String(o.partitions),
          TENURE_TOKEN: term.token.toString(),
          TENURE_HOLDER: term.holder,
        },
        o.graceMs,
      );
      this.current = run;
      log.info("started command", { ...fields, pid: run.pid });
      const exit = await run.exited;
      if (exit.stopped || this.ac.signal.aborted) return;
      logExit(log, fields, run.pid, exit);
      failures = exit.ranMs >= Math.max(RESTART_MAX_DELAY_MS, o.ttlMs) ? 1 : failures + 1;
      if (!(await restartPause(log, fields, o.restartDelayMs, failures, this.ac.signal))) return;
    }
  }

  /** Stops the CMD (SIGTERM to its group, SIGKILL after --grace); resolves once it has exited. */
  async stop(): Promise<void> {
    this.ac.abort();
    const run = this.current;
    if (run?.running) {
      this.log.info("stopping command", {
        lease: this.term.name,
        partition: this.partition,
        token: this.term.token,
        pid: run.pid,
        grace: formatDuration(this.o.graceMs),
      });
    }
    await run?.stop();
    await this.exited;
  }

  /** SIGKILL to the CMD's group now (second signal). */
  kill(): void {
    this.ac.abort();
    this.current?.kill();
  }
}
