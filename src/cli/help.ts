import { formatDuration } from "./duration.js";
import { CLI_DEFAULTS } from "./flags.js";
import { defaultStorePath } from "./store.js";

/** `tenure --help` and `tenure <command> --help`. */
export function helpText(command?: string): string {
  const d = CLI_DEFAULTS;
  const store = `  --store URL           where leases live (default $TENURE_STORE, else
                        sqlite:${defaultStorePath()})
                        sqlite:PATH | postgres://… | redis://… | etcd://host:port
  --connect-timeout D   how long to wait for an unreachable store at start-up,
                        on every backend, showing the wait (default ${formatDuration(d.connectTimeoutMs)})
  --log-format F        ${d.logFormat} (default) or json, on stderr
  --log-level L         debug, info (default), warn or error
  -h, --help            this help`;
  const exits = `Exit codes:
  0    success (run: the command exited 0, or tenure was stopped cleanly)
  64   usage error: unknown flag, bad duration, missing NAME or CMD, bad store URL
  65   status: a record in the store is not a valid lease (named; the rest listed)
  69   the store is unreachable or refused the connection at start-up
  70   internal error (a bug: please report it)
  75   run --no-wait: another process leads, nothing was run
  76   run --max-terms: CMD kept failing for that many terms; tenure gave up
  126  run: CMD is not executable      127  run: CMD not found
  137  run: CMD ignored SIGTERM at shutdown and was killed after --grace
  N    run --once / --restart never: CMD's own exit code (128+signal if killed)`;
  switch (command) {
    case "run":
      return `Usage: tenure run [options] --name NAME -- CMD [ARGS…]
       tenure run [options] --group NAME --partitions P -- CMD [ARGS…]

Campaigns for the lease NAME and runs CMD (no shell) while this process leads.
CMD gets TENURE_NAME, TENURE_TOKEN (fencing token) and TENURE_HOLDER in its
environment and runs in its own process group. When leadership is lost, CMD's
group gets SIGTERM, then SIGKILL after --grace, and tenure campaigns again.
SIGINT/SIGTERM stop CMD the same way, release the lease (fast handoff) and exit.

With --group, this process joins the group NAME of P partitions, shared fairly
over every process running the same group, and runs one CMD per partition it
owns, with TENURE_PARTITION, TENURE_PARTITIONS, TENURE_GROUP and that
partition's own TENURE_TOKEN, TENURE_NAME (its lease) and TENURE_HOLDER. A
partition's CMD is stopped (SIGTERM, SIGKILL after --grace) before the
partition is handed to another process; a CMD that exits is restarted
(--restart-delay). SIGINT/SIGTERM stop every CMD, then hand every partition over.

Options:
  --name NAME           lease name (required without --group): A–Z a–z 0–9 . _ : / -
  --group NAME          join this group instead of one lease (at most 92 characters)
  --partitions P        the group's partition count, 1 to 65536 (required with
                        --group; every process of the group must agree)
  --weight W            this process's share of the partitions, 1 to 1000 (default 1)
  --ttl D               lease time-to-live (default ${formatDuration(d.ttlMs)}); a crashed leader is
                        replaced within about this long
  --grace D             SIGTERM → SIGKILL delay when stopping CMD (default ${formatDuration(d.graceMs)})
  --once                run CMD once as leader, release, exit with its code;
                        processes that waited on that run exit 0 without running it
  --no-wait             exit 75 at once if another process leads
  --restart P           on-failure (default): restart CMD when it exits non-zero,
                        finish when it exits 0; always: restart on any exit;
                        never: exit with CMD's code when it exits
  --max-restarts N      failed runs in a row before resigning the lease so
                        another process can try (default ${d.maxRestarts})
  --max-terms N         give up and exit 76 after N terms in a row ended
                        that way (default ${d.maxTerms}: never give up)
  --restart-delay D     first restart delay, doubling up to ${formatDuration(d.restartMaxDelayMs)} (default ${formatDuration(d.restartDelayMs)})
  --holder ID           this process's identity (default hostname:pid:random)
  --health-port N       serve /livez /readyz /leader /healthz /metrics on this port
  --health-host H       address for --health-port (default ${d.healthHost})
  --readiness R         when /readyz is 200: reachable (default: the store
                        answers) or leader (only while leading)
${store}

Durations: 500ms, 15s, 1.5s, 2m, 1m30s, 1h, 1d (units largest first).

Not with --group: --once, --no-wait, --restart, --max-restarts, --max-terms,
--health-port, --health-host, --readiness.

Examples:
  tenure run --name nightly-report --ttl 10s -- node report.js
  tenure run --group tenants --partitions 64 -- node replicate.js

${exits}
`;
    case "status":
      return `Usage: tenure status [options] [NAME]

Shows who holds NAME (or every held lease): holder, fencing token, time to expiry.
Groups (tenure run --group, createGroup) are shown as one block each: members,
partitions per member, unowned partitions. NAME may be a group.

Options:
  --json                one JSON value (tokens as strings)
${store}

${exits}
`;
    case "watch":
      return `Usage: tenure watch [options] NAME

Prints the leader of NAME now and on every change, until interrupted.

Options:
  --json                one JSON object per line
${store}

${exits}
`;
    case "release":
      return `Usage: tenure release [options] NAME --force

Break-glass: releases NAME whoever holds it (for a holder known to be dead).
A live holder notices at once where the store notifies (Redis, etcd,
PostgreSQL direct, SQLite), else at its next renewal, and stops its command.

Options:
  --force               required
${store}

${exits}
`;
    default:
      return `Usage: tenure <command> [options]

Leader election for commands: run a command on exactly one host at a time.

Commands:
  run      campaign for a lease and run a command while leader
  status   show who holds leases
  watch    print each leadership change of a lease
  release  break-glass release of a lease (--force)

Run 'tenure <command> --help' for its options. 'tenure --version' prints the version.

Default store: $TENURE_STORE, else sqlite:${defaultStorePath()}

${exits}
`;
  }
}
