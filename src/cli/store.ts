import { homedir } from "node:os";
import { join } from "node:path";
import { errorMessage, isConfigError } from "../errors.js";
import type { Logger } from "../logger.js";
import { openStore, type StoreWait } from "../open.js";
import { redactSecrets, redactUrl } from "../store/classify.js";
import type { LeaseStore } from "../store/types.js";
import { formatDuration } from "./duration.js";
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
 * Opens the store and waits up to `connectTimeoutMs` for it to answer, the
 * same way on every backend (`openStore`'s `connectTimeoutMs`), showing the
 * wait: one line saying what it waits for, then one every 5 s. A bad URL is a
 * usage error; a store that stays unreachable (or refuses us for good) exits
 * with {@link EXIT.UNAVAILABLE}. The password of the URL never appears in a message.
 */
export async function openCliStore(
  url: string,
  opts: { logger: Logger; connectTimeoutMs: number; progressEveryMs?: number },
): Promise<LeaseStore> {
  const shown = redactUrl(url);
  // The store's own reconnect warnings stay quiet until it has answered once:
  // the wait is reported below instead.
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
  let ended: StoreWait | null = null;
  let store: LeaseStore;
  try {
    store = await openStore(url, {
      logger,
      // at least one bounded try, even with --connect-timeout 0
      connectTimeoutMs: Math.max(1, opts.connectTimeoutMs),
      progressEveryMs: opts.progressEveryMs ?? 5000,
      onWait: (w) => {
        const fields = {
          store: w.store,
          waited: formatDuration(w.waitedMs),
          attempt: w.attempt,
          ...(w.error ? { err: errorText(w.error) } : {}),
        };
        if (w.phase === "waiting") {
          opts.logger.info(
            `waiting up to ${formatDuration(opts.connectTimeoutMs)} for the store to answer (--connect-timeout)`,
            fields,
          );
        } else if (w.phase === "progress") {
          opts.logger.info("still waiting for the store", fields);
        } else if (w.phase === "ready") {
          opts.logger.info("store answered", { store: w.store, waited: fields.waited });
        }
        if (w.phase === "ready" || w.phase === "timed-out") ended = w;
      },
    });
  } catch (e) {
    if (isConfigError(e)) throw new UsageError(`--store: ${redactSecrets(errorText(e))}`);
    throw new CliExit(
      EXIT.UNAVAILABLE,
      `store ${shown} is unavailable: ${redactSecrets(errorText(e))}`,
    );
  }
  const end = ended as StoreWait | null;
  if (end?.phase === "timed-out") {
    await store.close().catch(() => {});
    const why = end.error ? `: ${redactSecrets(errorText(end.error))}` : "";
    throw new CliExit(
      EXIT.UNAVAILABLE,
      `store ${shown} is unavailable (gave up after ${formatDuration(end.waitedMs)}, ${end.attempt} attempt${end.attempt > 1 ? "s" : ""})${why}`,
    );
  }
  quiet = false;
  return store;
}

/**
 * An error's text for a CLI line (which starts with its own "tenure: "): a
 * ConfigError as `FIELD: DETAIL` (just DETAIL for the store URL itself),
 * "tenure postgres: …" as "postgres: …".
 */
function errorText(e: unknown): string {
  if (isConfigError(e)) return e.field === "store" ? e.detail : `${e.field}: ${e.detail}`;
  return errorMessage(e).replace(/^tenure ([a-z]+): /, "$1: ");
}
