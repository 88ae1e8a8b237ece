/** The commands and flags the `tenure` CLI accepts (node:util parseArgs options), and their defaults. */
import { ELECTOR_DEFAULTS } from "../elector/options.js";

/**
 * Defaults of the CLI's flags, as `--help` and docs/cli.md state them. The
 * lease timing is the library's own default (ELECTOR_DEFAULTS), not a copy.
 */
export const CLI_DEFAULTS = Object.freeze({
  connectTimeoutMs: 5_000,
  logFormat: "human",
  logLevel: "info",
  /** `run --ttl` */
  ttlMs: ELECTOR_DEFAULTS.ttlMs,
  /** `run --grace`: SIGTERM → SIGKILL delay. */
  graceMs: 10_000,
  restart: "on-failure",
  maxRestarts: 5,
  /** 0: never give up. */
  maxTerms: 0,
  /** First restart delay; it doubles per failure up to `restartMaxDelayMs`. */
  restartDelayMs: 1_000,
  restartMaxDelayMs: 30_000,
  healthHost: "127.0.0.1",
  readiness: "reachable",
} as const);
export const COMMANDS = ["run", "status", "watch", "release"] as const;
export type Command = (typeof COMMANDS)[number];

/** Flags every command takes. */
export const COMMON = {
  store: { type: "string" },
  "connect-timeout": { type: "string" },
  "log-format": { type: "string" },
  "log-level": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export const OPTIONS = {
  run: {
    ...COMMON,
    name: { type: "string" },
    group: { type: "string" },
    partitions: { type: "string" },
    weight: { type: "string" },
    ttl: { type: "string" },
    grace: { type: "string" },
    once: { type: "boolean" },
    "no-wait": { type: "boolean" },
    restart: { type: "string" },
    "max-restarts": { type: "string" },
    "max-terms": { type: "string" },
    "restart-delay": { type: "string" },
    holder: { type: "string" },
    "health-port": { type: "string" },
    "health-host": { type: "string" },
    readiness: { type: "string" },
  },
  status: { ...COMMON, json: { type: "boolean" } },
  watch: { ...COMMON, json: { type: "boolean" } },
  release: { ...COMMON, force: { type: "boolean" } },
} as const;
