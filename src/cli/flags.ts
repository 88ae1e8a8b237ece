/** The commands and flags the `tenure` CLI accepts (node:util parseArgs options). */
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
