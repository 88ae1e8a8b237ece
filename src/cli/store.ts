import { homedir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../clock.js";
import { errorMessage, isConfigError, isStoreError } from "../errors.js";
import type { Logger } from "../logger.js";
import { redactSecrets, redactUrl } from "../store/classify.js";
import { openStore } from "../store/open.js";
import type { LeaseStore } from "../store/types.js";
import { CliExit, EXIT, UsageError } from "./exit-codes.js";

/**
 * The embedded default store file: `$XDG_STATE_HOME/tenure/leases.db`, else
 * `~/.local/state/tenure/leases.db`. One file per user, shared by every
 * `tenure` process of that user on this host.
 */
export function defaultStorePath(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.XDG_STATE_HOME?.trim() || join(homedir(), ".local", "state");
  return join(state, "tenure", "leases.db");
}

/** `--store`, else `$TENURE_STORE`, else the embedded SQLite file. */
export function resolveStoreUrl(flag: string | undefined, env = process.env): string {
  if (flag !== undefined) {
    if (flag.trim() === "") throw new UsageError("--store: must not be empty");
    return flag;
  }
  const fromEnv = env.TENURE_STORE?.trim();
  if (fromEnv) return fromEnv;
  return `sqlite:${defaultStorePath(env)}`;
}

/**
 * Opens the store and checks it answers, retrying transient failures until
 * `connectTimeoutMs`. A bad URL is a usage error; a store that stays
 * unreachable (or refuses us for good) exits with {@link EXIT.UNAVAILABLE}.
 * The password of the URL never appears in a message.
 */
export async function openCliStore(
  url: string,
  opts: { logger: Logger; connectTimeoutMs: number; probe: (s: LeaseStore) => Promise<unknown> },
): Promise<LeaseStore> {
  const shown = redactUrl(url);
  // The store's own reconnect warnings stay quiet until it has answered once:
  // an unreachable store at start-up is reported as one line below.
  let quiet = true;
  const gate =
    (level: keyof Logger): Logger[keyof Logger] =>
    (msg, fields) => {
      if (!quiet) opts.logger[level](msg, fields);
    };
  const logger: Logger = {
    debug: gate("debug"),
    info: gate("info"),
    warn: gate("warn"),
    error: gate("error"),
  };
  let store: LeaseStore;
  try {
    store = await openStore(url, { logger });
  } catch (e) {
    if (isConfigError(e)) throw new UsageError(`--store: ${redactSecrets(stripPrefix(e.message))}`);
    throw new CliExit(
      EXIT.UNAVAILABLE,
      `cannot open store ${shown}: ${redactSecrets(errorMessage(e))}`,
    );
  }
  const deadline = systemClock.now() + opts.connectTimeoutMs;
  let delay = 100;
  for (let attempt = 1; ; attempt++) {
    const left = deadline - systemClock.now();
    let err: unknown;
    try {
      const r = await withTimeout(opts.probe(store), Math.max(1, left));
      if (r.ok) {
        quiet = false;
        return store;
      }
      err = new Error(`no answer within ${Math.round(opts.connectTimeoutMs)} ms`);
    } catch (e) {
      err = e;
    }
    // The store answered, with data that is not a valid lease: reachable; the command says what is wrong.
    if (isStoreError(err) && err.kind === "schema") {
      quiet = false;
      return store;
    }
    const transient = !isStoreError(err) || err.transient;
    if (!transient || systemClock.now() + delay >= deadline) {
      await store.close().catch(() => {});
      const why = redactSecrets(stripPrefix(errorMessage(err)));
      throw new CliExit(
        EXIT.UNAVAILABLE,
        `store ${shown} is unavailable${transient ? ` (gave up after ${attempt} attempt${attempt > 1 ? "s" : ""})` : ""}: ${why}`,
      );
    }
    await systemClock.sleep(delay);
    delay = Math.min(delay * 2, 2000);
  }
}

function stripPrefix(msg: string): string {
  return msg.replace(/^tenure config: (store: )?/, "");
}

async function withTimeout<T>(
  p: Promise<T>,
  ms: number,
): Promise<{ ok: true; value: T } | { ok: false }> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<{ ok: false }>((r) => {
    timer = setTimeout(() => r({ ok: false }), ms);
  });
  try {
    return await Promise.race([p.then((value) => ({ ok: true as const, value })), t]);
  } finally {
    clearTimeout(timer);
  }
}
