import { callAsync, pause, raceDeadline, TIMED_OUT } from "../async.js";
import { backoffDelay } from "../backoff.js";
import { ConfigError, type DemotionReason, isFencedError, toError } from "../errors.js";
import { checkInt, MAX_TIMER_MS } from "../limits.js";
import type { Term } from "../term.js";
import { type Checkpoint, fencedCheckpoint } from "./checkpoint.js";
import type { LeaderContext } from "./hooks.js";
import { type RecoveryInput, type RecoveryStrategy, resolveRecovery } from "./recovery.js";
import { anySignal } from "./util.js";

/** What a stream's `run` receives besides the term. */
export interface StreamContext {
  /** The stream's fenced checkpoint (`checkpoint:<name>` under the lease): load it to resume, save to acknowledge. */
  readonly checkpoint: Checkpoint;
  /** Aborted when the term ends, the stream is unregistered, or `fail` is called. */
  readonly signal: AbortSignal;
  /** 1 for the first run of a term, then 2, 3… for reconnects (resets after `healthy()`). */
  readonly attempt: number;
  /** Tells the recovery strategy the stream works again: the reconnect backoff starts over. */
  healthy(): void;
  /** Signals an error without rejecting (for event-based clients): the run counts as failed now. */
  fail(err: unknown): void;
}

/** Leader-held long-running work, restarted by its recovery strategy. */
export interface StreamDefinition {
  /** Unique name among this elector's streams; also names its checkpoint. */
  name: string;
  /**
   * Runs the stream for `term` until it ends (resolve), fails (reject or
   * `ctx.fail`) or `ctx.signal` aborts. A run that ends because the term ended
   * is never treated as a failure.
   */
  run(term: Term, ctx: StreamContext): unknown;
  /** What happens when `run` fails while still leading. Default `{ strategy: "reconnect" }` (1 s → 60 s, unlimited). */
  recovery?: RecoveryInput | RecoveryStrategy;
  /** Exit function of the `exit` strategy. Default `process.exit`. */
  exit?: (code: number) => void;
  /** How long a term's end waits for `run` to return after its signal aborted. Default 5 000 ms. */
  stopTimeoutMs?: number;
}

/** Where a stream stands. */
export type StreamState = "idle" | "running" | "reconnecting" | "exiting" | "failed" | "finished";

/** Status and counters of one stream. */
export interface StreamStatus {
  readonly name: string;
  readonly state: StreamState;
  /** Failed runs while leading (all terms). */
  readonly failures: number;
  /** Reconnects started (all terms). */
  readonly reconnects: number;
}

interface Stream {
  readonly name: string;
  readonly def: StreamDefinition;
  readonly recovery: RecoveryStrategy;
  readonly exit: (code: number) => void;
  readonly stopTimeoutMs: number;
  readonly ac: AbortController;
  state: StreamState;
  failures: number;
  reconnects: number;
  /** The current term's run loop, if any. */
  running: Promise<void> | null;
}

const NONE = Symbol("none");

/** Log fields of one stream in one term. */
type StreamFields = { lease: string; token: bigint; stream: string };

/** Defaults of a stream definition. */
export const STREAM_DEFAULTS = Object.freeze({ stopTimeoutMs: 5_000 });

/** A FencedError for this very term: its own write was refused because the lease moved on. */
function isOwnFence(e: unknown, term: Term): boolean {
  return isFencedError(e) && e.lease === term.name && e.token === term.token;
}

/** Leader-held streams of one elector. */
export class StreamSet {
  private readonly streams: Stream[] = [];
  private term: Term | null = null;
  private readonly closeAc = new AbortController();

  constructor(private readonly ctx: LeaderContext) {}

  add(def: StreamDefinition): () => void {
    if (!def || typeof def !== "object") throw new ConfigError("stream", "must be an object");
    if (typeof def.name !== "string" || def.name.length === 0 || def.name.length > 128) {
      throw new ConfigError("stream.name", "must be a non-empty string of at most 128 characters");
    }
    if (typeof def.run !== "function") throw new ConfigError("stream.run", "must be a function");
    if (def.exit !== undefined && typeof def.exit !== "function") {
      throw new ConfigError("stream.exit", "must be a function taking an exit code");
    }
    if (this.streams.some((s) => s.name === def.name)) {
      throw new ConfigError("stream.name", `a stream named "${def.name}" is already registered`);
    }
    const stopTimeoutMs = checkInt(
      "stream.stopTimeoutMs",
      def.stopTimeoutMs ?? STREAM_DEFAULTS.stopTimeoutMs,
      1,
      MAX_TIMER_MS,
      " (ms)",
    );
    const s: Stream = {
      name: def.name,
      def,
      recovery: resolveRecovery(def.recovery ?? {}, "stream.recovery."),
      exit: def.exit ?? ((code) => process.exit(code)),
      stopTimeoutMs,
      ac: new AbortController(),
      state: "idle",
      failures: 0,
      reconnects: 0,
      running: null,
    };
    this.streams.push(s);
    const t = this.term;
    if (t && !t.signal.aborted) this.launch(s, t);
    return () => {
      s.ac.abort();
      const i = this.streams.indexOf(s);
      if (i >= 0) this.streams.splice(i, 1);
    };
  }

  onElected(term: Term): void {
    this.term = term;
    for (const s of this.streams) this.launch(s, term);
  }

  async onTermEnded(term: Term, _reason: DemotionReason): Promise<void> {
    if (this.term === term) this.term = null;
    await Promise.all(
      this.streams.map(async (s) => {
        const p = s.running;
        if (!p) return;
        const r = await raceDeadline(this.ctx.clock, p, s.stopTimeoutMs);
        if (r === TIMED_OUT) {
          this.ctx.logger.error("stream did not return after its term ended", {
            lease: this.ctx.name,
            token: term.token,
            stream: s.name,
            delayMs: s.stopTimeoutMs,
          });
        }
      }),
    );
  }

  async close(): Promise<void> {
    this.closeAc.abort();
    this.term = null;
    await Promise.all(
      this.streams.map(
        (s) => s.running && raceDeadline(this.ctx.clock, s.running, s.stopTimeoutMs),
      ),
    );
  }

  problem(): string | null {
    if (!this.term) return null;
    for (const s of this.streams) {
      if (s.state === "failed") return `stream "${s.name}" failed and is not running`;
      if (s.state === "exiting") return `stream "${s.name}" failed; process exiting`;
    }
    return null;
  }

  status(): StreamStatus[] {
    return this.streams.map((s) => ({
      name: s.name,
      state: s.state,
      failures: s.failures,
      reconnects: s.reconnects,
    }));
  }

  private launch(s: Stream, term: Term): void {
    const p = this.runTerm(s, term).catch((e) => {
      this.ctx.logger.error("stream loop crashed", {
        lease: this.ctx.name,
        stream: s.name,
        err: e,
      });
      this.ctx.reportError(toError(e));
    });
    s.running = p;
    void p.finally(() => {
      if (s.running === p) s.running = null;
    });
  }

  /**
   * After a fenced rejection of the term's own write: asks the elector to
   * confirm the loss (which ends the term at once) and, while the store cannot
   * answer, waits for the term to end (at the latest when its trust window
   * passes). True when the term (or the stream) ended; false when the store
   * shows the term still holding the lease, so the error was not a loss.
   */
  private async awaitLoss(term: Term, signal: AbortSignal): Promise<boolean> {
    for (let n = 1; !signal.aborted; n++) {
      const r = await this.ctx.confirmTerm(term);
      if (r === "held") return signal.aborted;
      if (r === "ended") return true;
      const delayMs = backoffDelay(
        n,
        { initialMs: 50, maxMs: 1_000, jitter: 0.2 },
        this.ctx.random,
      );
      if (!(await pause(this.ctx.clock, delayMs, signal))) return true;
    }
    return true;
  }

  /**
   * Runs `s` for `term`: one run after another until the term (or the stream)
   * ends, the run finishes, or the recovery strategy gives up. Each run,
   * reconnects included, re-checks leadership against the clock first.
   */
  private async runTerm(s: Stream, term: Term): Promise<void> {
    const { ctx } = this;
    const signal = anySignal(term.signal, s.ac.signal, this.closeAc.signal);
    const checkpoint = fencedCheckpoint(ctx.store, term, s.name);
    const fields: StreamFields = { lease: ctx.name, token: term.token, stream: s.name };
    const failures = { count: 0 };
    while (!signal.aborted) {
      // A reconnect timer can fire after the trust window closed, before anything demoted the term.
      if (!ctx.enforceDeadline() || ctx.term() !== term) break;
      const error = await this.runOnce(s, term, signal, checkpoint, failures, fields);
      // Losing the election is not an error: demote on the spot if the window passed.
      ctx.enforceDeadline();
      if (await this.endedWithTerm(error, term, signal, fields)) {
        ctx.logger.debug("stream ended with its term (not an error)", fields);
        s.state = "idle";
        return;
      }
      if (error === NONE) {
        ctx.logger.info("stream finished", fields);
        s.state = "finished";
        return;
      }
      failures.count += 1;
      s.failures += 1;
      ctx.reportError(toError(error));
      if (!(await this.recover(s, error, failures.count, signal, fields))) return;
      s.reconnects += 1;
    }
    s.state = "idle";
  }

  /** One run of `s`: resolves with what it failed with, or {@link NONE} when it finished. */
  private async runOnce(
    s: Stream,
    term: Term,
    signal: AbortSignal,
    checkpoint: Checkpoint,
    failures: { count: number },
    fields: StreamFields,
  ): Promise<unknown> {
    const attemptAc = new AbortController();
    let failedWith: unknown = NONE;
    let onFail: () => void = () => {};
    const failed = new Promise<void>((r) => {
      onFail = r;
    });
    const sctx: StreamContext = {
      checkpoint,
      signal: anySignal(signal, attemptAc.signal),
      attempt: failures.count + 1,
      healthy: () => {
        if (attemptAc.signal.aborted || signal.aborted) return;
        if (failures.count > 0)
          this.ctx.logger.info("stream healthy again", { ...fields, attempt: failures.count });
        failures.count = 0;
        s.state = "running";
      },
      fail: (err) => {
        if (failedWith !== NONE || attemptAc.signal.aborted) return;
        failedWith = err ?? new Error("stream failed");
        attemptAc.abort(failedWith);
        onFail();
      },
    };
    s.state = "running";
    let error: unknown = NONE;
    try {
      await Promise.race([callAsync(() => s.def.run(term, sctx)), failed]);
      error = failedWith;
    } catch (e) {
      error = failedWith !== NONE ? failedWith : e;
    }
    attemptAc.abort();
    return error;
  }

  /**
   * True when the run ended because the term (or stream) did. A fenced
   * rejection of the term's own write means the lease has moved on: that ends
   * the term (or the elector ends it shortly), and recovery never sees it.
   */
  private async endedWithTerm(
    error: unknown,
    term: Term,
    signal: AbortSignal,
    fields: StreamFields,
  ): Promise<boolean> {
    if (!signal.aborted && error !== NONE && isOwnFence(error, term)) {
      this.ctx.logger.debug("stream write fenced: the lease was lost (not an error)", fields);
      if (await this.awaitLoss(term, signal)) return true;
    }
    return signal.aborted;
  }

  /**
   * Applies the stream's recovery strategy to a failed run. Resolves true to
   * run again (after the reconnect delay), false when the stream stays stopped.
   */
  private async recover(
    s: Stream,
    error: unknown,
    failures: number,
    signal: AbortSignal,
    fields: StreamFields,
  ): Promise<boolean> {
    const { ctx } = this;
    const r = s.recovery;
    if (r.strategy === "log") {
      ctx.logger.error("stream failed; leaving it stopped (strategy log)", {
        ...fields,
        err: error,
      });
      s.state = "failed";
      return false;
    }
    if (r.strategy === "exit") {
      ctx.logger.error(
        "stream failed; exiting so a supervisor restarts the process (strategy exit)",
        {
          ...fields,
          err: error,
          delayMs: r.exitDelayMs,
          exitCode: r.exitCode,
        },
      );
      s.state = "exiting";
      if (!(await pause(ctx.clock, r.exitDelayMs, signal))) {
        ctx.logger.info("exit cancelled: the term ended first", fields);
        s.state = "idle";
        return false;
      }
      s.exit(r.exitCode);
      return false;
    }
    if (r.maxAttempts > 0 && failures > r.maxAttempts) {
      ctx.logger.error("stream failed; reconnect attempts exhausted", {
        ...fields,
        err: error,
        attempt: failures - 1,
      });
      s.state = "failed";
      return false;
    }
    const delayMs = backoffDelay(
      failures,
      { initialMs: r.initialDelayMs, maxMs: r.maxDelayMs, jitter: 0.2 },
      ctx.random,
    );
    ctx.logger.warn("stream failed; reconnecting", {
      ...fields,
      err: error,
      attempt: failures,
      delayMs,
    });
    s.state = "reconnecting";
    if (!(await pause(ctx.clock, delayMs, signal))) {
      s.state = "idle";
      return false;
    }
    return true;
  }
}
