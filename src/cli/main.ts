#!/usr/bin/env node
/**
 * The `tenure` command line. See `tenure --help` and docs/cli.md.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type ConfigError, errorMessage, isConfigError } from "../errors.js";
import { MAX_GROUP_NAME, MAX_PARTITIONS, MAX_WEIGHT } from "../group/options.js";
import { createStreamLogger, type Logger, type LogLevel } from "../logger.js";
import { redactSecrets } from "../store/classify.js";
import type { LeaseStore } from "../store/types.js";
import { validateLeaseName } from "../store/validate.js";
import { parseCount, parseDuration } from "./duration.js";
import { CliExit, EXIT, UsageError } from "./exit-codes.js";
import { CLI_DEFAULTS, COMMANDS, type Command, OPTIONS } from "./flags.js";
import { helpText } from "./help.js";
import { releaseCommand, statusCommand, storeFailure, watchCommand } from "./inspect.js";
import { checkCommand, type RestartPolicy, type RunOptions, runCommand } from "./run.js";
import { type GroupRunOptions, runGroupCommand } from "./run-group.js";
import { openCliStore, resolveStoreUrl } from "./store.js";

function version(): string {
  const pkg = JSON.parse(
    readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
  ) as { version: string };
  return pkg.version;
}

/** A ConfigError as the CLI shows it: `FIELD: DETAIL` (the CLI adds its own "tenure: "). */
function usageError(e: ConfigError): UsageError {
  return new UsageError(`${e.field}: ${e.detail}`);
}

function leaseName(flag: string, v: string | undefined): string {
  if (v === undefined) throw new UsageError(`${flag} is required`);
  try {
    return validateLeaseName(v, flag);
  } catch (e) {
    if (isConfigError(e)) throw usageError(e);
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

/** A parsed command line: the command, its flags and positionals, and the CMD after `--`. */
interface CommandLine {
  readonly command: Command;
  readonly values: Record<string, string | boolean | undefined>;
  readonly positionals: readonly string[];
  /** What follows `--` (the command of `tenure run`). */
  readonly cmd: readonly string[];
  str(flag: string): string | undefined;
}

/** What every command takes: the logger, the store URL and how long to wait for it. */
interface CommonFlags {
  readonly logger: Logger;
  readonly storeUrl: string;
  readonly connectTimeoutMs: number;
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
  const line = parseCommandLine(first, argv.slice(1));
  if (line.values.help) {
    process.stdout.write(helpText(line.command));
    return EXIT.OK;
  }
  const common = commonFlags(line);
  if (line.command === "run") return runFromFlags(line, common);
  return inspectFromFlags(line, common);
}

/** Splits `COMMAND [flags…] [-- CMD…]` and parses the flags the command takes. */
function parseCommandLine(first: string, rest: string[]): CommandLine {
  if (!(COMMANDS as readonly string[]).includes(first)) {
    throw new UsageError(
      `unknown command ${JSON.stringify(first)}; commands: ${COMMANDS.join(", ")} (see tenure --help)`,
    );
  }
  const command = first as Command;
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
  const values = parsed.values as Record<string, string | boolean | undefined>;
  return {
    command,
    values,
    positionals: parsed.positionals,
    cmd,
    str: (k) => values[k] as string | undefined,
  };
}

function commonFlags(line: CommandLine): CommonFlags {
  const { str } = line;
  const d = CLI_DEFAULTS;
  const logFormat = oneOf(
    "--log-format",
    str("log-format"),
    ["human", "json"] as const,
    d.logFormat,
  );
  const logLevel = oneOf<LogLevel>(
    "--log-level",
    str("log-level"),
    ["debug", "info", "warn", "error"],
    d.logLevel,
  );
  return {
    logger: createStreamLogger({ format: logFormat, level: logLevel }),
    connectTimeoutMs: durationFlag("--connect-timeout", str("connect-timeout"), d.connectTimeoutMs),
    storeUrl: resolveStoreUrl(str("store")),
  };
}

/** A duration flag, or `dflt` when it was not given. */
function durationFlag(
  flag: string,
  text: string | undefined,
  dflt: number,
  range?: { min: number },
): number {
  return text === undefined ? dflt : parseDuration(flag, text, range);
}

/** A count flag, or `dflt` when it was not given. */
function countFlag(flag: string, text: string | undefined, dflt: number): number {
  return text === undefined ? dflt : parseCount(flag, text);
}

/** `tenure run`: validates every flag before touching the store, then runs the command. */
async function runFromFlags(line: CommandLine, common: CommonFlags): Promise<number> {
  const options = line.str("group") === undefined ? runOptions(line) : groupRunOptions(line);
  checkCommand(options.command[0]!);
  const store = await openCliStore(common.storeUrl, common);
  try {
    if ("group" in options) return await runGroupCommand(store, options, common.logger);
    return await runCommand(store, options, common.logger);
  } catch (e) {
    if (isConfigError(e)) throw usageError(e);
    throw e;
  } finally {
    await store.close().catch(() => {});
  }
}

/** Flags of `tenure run` that only make sense for one lease. */
const SINGLE_LEASE_FLAGS = [
  "name",
  "once",
  "no-wait",
  "restart",
  "max-restarts",
  "max-terms",
  "health-port",
  "health-host",
  "readiness",
] as const;

/** The flags of `tenure run --group`, checked, with their defaults. */
function groupRunOptions({ positionals, cmd, values, str }: CommandLine): GroupRunOptions {
  if (positionals.length > 0) {
    throw new UsageError(
      `run: unexpected argument ${JSON.stringify(positionals[0])}; put the command after --`,
    );
  }
  for (const f of SINGLE_LEASE_FLAGS) {
    if (values[f] !== undefined) throw new UsageError(`--${f} cannot be used with --group`);
  }
  const group = leaseName("--group", str("group"));
  if (group.length > MAX_GROUP_NAME) {
    throw new UsageError(
      `--group: a group name must be at most ${MAX_GROUP_NAME} characters, got ${group.length}`,
    );
  }
  const p = str("partitions");
  if (p === undefined) throw new UsageError("--partitions is required with --group");
  const partitions = parseCount("--partitions", p, { min: 1, max: MAX_PARTITIONS });
  const w = str("weight");
  const weight = w === undefined ? 1 : parseCount("--weight", w, { min: 1, max: MAX_WEIGHT });
  if (cmd.length === 0) {
    throw new UsageError(
      "run: missing command; use tenure run --group NAME --partitions P -- CMD [ARGS…]",
    );
  }
  const d = CLI_DEFAULTS;
  const holder = str("holder");
  if (holder !== undefined && (holder.length === 0 || holder.length > 255)) {
    throw new UsageError("--holder: must be 1 to 255 characters");
  }
  return {
    group,
    partitions,
    weight,
    ttlMs: durationFlag("--ttl", str("ttl"), d.ttlMs, { min: 100 }),
    graceMs: durationFlag("--grace", str("grace"), d.graceMs),
    restartDelayMs: durationFlag("--restart-delay", str("restart-delay"), d.restartDelayMs, {
      min: 1,
    }),
    ...(holder !== undefined ? { holder } : {}),
    command: [...cmd],
  };
}

/** The flags of `tenure run`, checked, with their defaults. */
function runOptions({ positionals, cmd, values, str }: CommandLine): RunOptions {
  for (const f of ["partitions", "weight"] as const) {
    if (values[f] !== undefined) throw new UsageError(`--${f} needs --group`);
  }
  if (positionals.length > 0) {
    throw new UsageError(
      `run: unexpected argument ${JSON.stringify(positionals[0])}; put the command after --`,
    );
  }
  const name = leaseName("--name", str("name"));
  if (cmd.length === 0)
    throw new UsageError("run: missing command; use tenure run --name NAME -- CMD [ARGS…]");
  const d = CLI_DEFAULTS;
  const ttlMs = durationFlag("--ttl", str("ttl"), d.ttlMs, { min: 100 });
  const graceMs = durationFlag("--grace", str("grace"), d.graceMs);
  const restart = oneOf<RestartPolicy>(
    "--restart",
    str("restart"),
    ["on-failure", "always", "never"],
    d.restart,
  );
  const maxRestarts = countFlag("--max-restarts", str("max-restarts"), d.maxRestarts);
  const maxTerms = countFlag("--max-terms", str("max-terms"), d.maxTerms);
  const restartDelayMs = durationFlag("--restart-delay", str("restart-delay"), d.restartDelayMs, {
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
  return {
    name,
    ttlMs,
    graceMs,
    once: values.once === true,
    wait: values["no-wait"] !== true,
    restart,
    maxRestarts,
    maxTerms,
    restartDelayMs,
    ...(holder !== undefined ? { holder } : {}),
    ...(healthPort !== undefined ? { healthPort } : {}),
    healthHost: str("health-host") ?? d.healthHost,
    readiness: oneOf(
      "--readiness",
      str("readiness"),
      ["reachable", "leader"] as const,
      d.readiness,
    ),
    command: [...cmd],
  };
}

/** `tenure status`, `watch` and `release`: one lease NAME (optional for status), no CMD. */
async function inspectFromFlags(line: CommandLine, common: CommonFlags): Promise<number> {
  const { command, cmd, positionals, values } = line;
  if (cmd.length > 0) throw new UsageError(`${command}: unexpected arguments after --`);
  if (positionals.length > 1) {
    throw new UsageError(`${command}: unexpected argument ${JSON.stringify(positionals[1])}`);
  }
  const name = positionals[0] === undefined ? undefined : leaseName("NAME", positionals[0]);
  if (command !== "status" && name === undefined)
    throw new UsageError(`${command}: NAME is required`);
  if (command === "release" && values.force !== true) {
    // Refuse before touching the store.
    throw new UsageError(
      `release: refusing to break lease "${name}" without --force (its holder may still be running; check with tenure status ${name})`,
    );
  }
  const store = await openCliStore(common.storeUrl, common);
  try {
    if (command === "status")
      return await statusCommand(store, name, values.json === true, process.stdout);
    if (command === "release") return await releaseCommand(store, name!, process.stdout);
    return await watchUntilSignal(store, name!, values.json === true, common.logger);
  } catch (e) {
    if (e instanceof UsageError || e instanceof CliExit) throw e;
    throw storeFailure(e);
  } finally {
    await store.close().catch(() => {});
  }
}

/** `tenure watch` until SIGINT or SIGTERM. */
async function watchUntilSignal(
  store: LeaseStore,
  name: string,
  json: boolean,
  logger: Logger,
): Promise<number> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    return await watchCommand(store, name, json, process.stdout, logger, ac.signal);
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
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
