#!/usr/bin/env node
/**
 * The `tenure` command line. See `tenure --help` and docs/cli.md.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError, errorMessage, isConfigError } from "../errors.js";
import { createStreamLogger, type Logger, type LogLevel } from "../logger.js";
import { redactSecrets } from "../store/classify.js";
import { validateLeaseName } from "../store/validate.js";
import { parseCount, parseDuration } from "./duration.js";
import { CliExit, EXIT, UsageError } from "./exit-codes.js";
import { COMMANDS, type Command, OPTIONS } from "./flags.js";
import { helpText } from "./help.js";
import { releaseCommand, statusCommand, storeFailure, watchCommand } from "./inspect.js";
import { checkCommand, type RestartPolicy, runCommand } from "./run.js";
import { openCliStore, resolveStoreUrl } from "./store.js";

function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
  ) as { version: string };
  return pkg.version;
}

function leaseName(flag: string, v: string | undefined): string {
  if (v === undefined) throw new UsageError(`${flag} is required`);
  try {
    return validateLeaseName(v, flag);
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message.replace(/^tenure config: /, ""));
    throw e;
  }
}

function oneOf<T extends string>(
  flag: string,
  v: string | undefined,
  allowed: readonly T[],
  dflt: T,
): T {
  if (v === undefined) return dflt;
  if ((allowed as readonly string[]).includes(v)) return v as T;
  throw new UsageError(`${flag}: ${JSON.stringify(v)} is not one of ${allowed.join(", ")}`);
}

/** Runs the CLI with `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    process.stdout.write(helpText(argv[1]));
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (first === "--version" || first === "-v" || first === "version") {
    process.stdout.write(`tenure ${version()}\n`);
    return EXIT.OK;
  }
  if (!(COMMANDS as readonly string[]).includes(first)) {
    throw new UsageError(
      `unknown command ${JSON.stringify(first)}; commands: ${COMMANDS.join(", ")} (see tenure --help)`,
    );
  }
  const command = first as Command;
  const rest = argv.slice(1);
  const dash = rest.indexOf("--");
  const flagArgs = dash >= 0 ? rest.slice(0, dash) : rest;
  const cmd = dash >= 0 ? rest.slice(dash + 1) : [];

  let parsed: ReturnType<
    typeof parseArgs<{ options: (typeof OPTIONS)[Command]; allowPositionals: true }>
  >;
  try {
    parsed = parseArgs({
      args: flagArgs,
      options: OPTIONS[command],
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError(
      `${command}: ${errorMessage(e).replace(/\s*To specify a positional.*$/s, "")}`,
    );
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const str = (k: string) => v[k] as string | undefined;
  if (v.help) {
    process.stdout.write(helpText(command));
    return EXIT.OK;
  }

  const logFormat = oneOf("--log-format", str("log-format"), ["human", "json"] as const, "human");
  const logLevel = oneOf<LogLevel>(
    "--log-level",
    str("log-level"),
    ["debug", "info", "warn", "error"],
    "info",
  );
  const logger: Logger = createStreamLogger({ format: logFormat, level: logLevel });
  const connectTimeoutMs = parseDuration("--connect-timeout", str("connect-timeout") ?? "5s");
  const storeUrl = resolveStoreUrl(str("store"));
  const positionals = parsed.positionals;

  if (command === "run") {
    if (positionals.length > 0) {
      throw new UsageError(
        `run: unexpected argument ${JSON.stringify(positionals[0])}; put the command after --`,
      );
    }
    const name = leaseName("--name", str("name"));
    if (cmd.length === 0)
      throw new UsageError("run: missing command; use tenure run --name NAME -- CMD [ARGS…]");
    const ttlMs = parseDuration("--ttl", str("ttl") ?? "15s", { min: 100 });
    const graceMs = parseDuration("--grace", str("grace") ?? "10s");
    const restart = oneOf<RestartPolicy>(
      "--restart",
      str("restart"),
      ["on-failure", "always", "never"],
      "on-failure",
    );
    const maxRestarts = parseCount("--max-restarts", str("max-restarts") ?? "5");
    const maxTerms = parseCount("--max-terms", str("max-terms") ?? "0");
    const restartDelayMs = parseDuration("--restart-delay", str("restart-delay") ?? "1s", {
      min: 1,
    });
    const healthPort =
      str("health-port") === undefined
        ? undefined
        : parseCount("--health-port", str("health-port")!, { max: 65535 });
    const holder = str("holder");
    if (holder !== undefined && (holder.length === 0 || holder.length > 255)) {
      throw new UsageError("--holder: must be 1 to 255 characters");
    }
    checkCommand(cmd[0]!);
    const store = await openCliStore(storeUrl, { logger, connectTimeoutMs });
    try {
      return await runCommand(
        store,
        {
          name,
          ttlMs,
          graceMs,
          once: v.once === true,
          wait: v["no-wait"] !== true,
          restart,
          maxRestarts,
          maxTerms,
          restartDelayMs,
          ...(holder !== undefined ? { holder } : {}),
          ...(healthPort !== undefined ? { healthPort } : {}),
          healthHost: str("health-host") ?? "127.0.0.1",
          readiness: oneOf(
            "--readiness",
            str("readiness"),
            ["reachable", "leader"] as const,
            "reachable",
          ),
          command: cmd,
        },
        logger,
      );
    } catch (e) {
      if (isConfigError(e)) throw new UsageError(e.message.replace(/^tenure config: /, ""));
      throw e;
    } finally {
      await store.close().catch(() => {});
    }
  }

  if (cmd.length > 0) throw new UsageError(`${command}: unexpected arguments after --`);
  const maxPositionals = 1;
  if (positionals.length > maxPositionals) {
    throw new UsageError(`${command}: unexpected argument ${JSON.stringify(positionals[1])}`);
  }
  const name = positionals[0] === undefined ? undefined : leaseName("NAME", positionals[0]);
  if (command !== "status" && name === undefined)
    throw new UsageError(`${command}: NAME is required`);
  if (command === "release" && v.force !== true) {
    // Refuse before touching the store.
    throw new UsageError(
      `release: refusing to break lease "${name}" without --force (its holder may still be running; check with tenure status ${name})`,
    );
  }
  const store = await openCliStore(storeUrl, { logger, connectTimeoutMs });
  try {
    if (command === "status")
      return await statusCommand(store, name, v.json === true, process.stdout);
    if (command === "release") return await releaseCommand(store, name!, process.stdout);
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    try {
      return await watchCommand(store, name!, v.json === true, process.stdout, logger, ac.signal);
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof CliExit) throw e;
    throw storeFailure(e);
  } finally {
    await store.close().catch(() => {});
  }
}

function fail(e: unknown): number {
  if (e instanceof UsageError) {
    process.stderr.write(`tenure: ${redactSecrets(e.message)}\n`);
    return EXIT.USAGE;
  }
  if (e instanceof CliExit) {
    process.stderr.write(`tenure: ${redactSecrets(e.message)}\n`);
    return e.code;
  }
  process.stderr.write(`tenure: internal error: ${redactSecrets(errorMessage(e))}\n`);
  return EXIT.INTERNAL;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Flush stdout/stderr, then leave even if a driver keeps a handle open.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (e) => {
    process.exitCode = fail(e);
    setTimeout(() => process.exit(process.exitCode), 50).unref();
  },
);
