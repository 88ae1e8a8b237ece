/**
 * The command guard: a tiny process between `tenure run` and the command.
 *
 * `tenure run` spawns it in a new process group; it spawns the command in the
 * same group and mirrors its exit status. It exists for one reason: if
 * `tenure run` dies without warning (SIGKILL, OOM killer) the guard notices at
 * once — its IPC channel to the parent closes — and stops the command's whole
 * process group (SIGTERM, SIGKILL after the grace period), so a dead leader
 * never leaves its command running next to the next leader's.
 *
 * Signals sent to the group reach the command directly; the guard ignores them
 * and exits when the command does. A signal sent to the group before the
 * command exists would reach only the guard (which ignores it) and the command
 * would run until the SIGKILL after the grace period: so the guard tells its
 * parent over IPC once the command is spawned (`spawned`), and `CommandRun`
 * holds back its SIGTERM until then. Argv: `GRACE_MS CMD [ARGS…]`.
 */
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { SPAWNED } from "./guard-protocol.js";

const [graceText, cmd, ...args] = process.argv.slice(2);
const graceMs = Number(graceText);

// The parent's death is heard as `disconnect` (below). A parent that died while this
// script's modules were still loading closed the channel before anyone listened, and that
// event is gone: with no parent left, run nothing.
if (!process.connected) process.exit(1);

for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"] as const) process.on(sig, () => {});

const env = { ...process.env };
delete env.NODE_CHANNEL_FD;
delete env.NODE_CHANNEL_SERIALIZATION_MODE;

const child = spawn(cmd!, args, { stdio: "inherit", env });
let exited = false;
// The command is in the group now: a SIGTERM to the group from here on reaches it.
// (A parent already gone has closed the channel: the callback takes that error.)
if (child.pid !== undefined) process.send?.(SPAWNED, undefined, {}, () => {});

child.on("error", (e: NodeJS.ErrnoException) => {
  process.stderr.write(`tenure: cannot run ${JSON.stringify(cmd)}: ${e.message}\n`);
  process.exit(e.code === "ENOENT" ? 127 : 126);
});

child.on("exit", (code, signal) => {
  exited = true;
  process.channel?.unref();
  if (signal) {
    for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"] as const)
      process.removeAllListeners(sig);
    process.kill(process.pid, signal);
    // A signal whose default action is not to terminate: report it shell-style.
    process.exit(128 + (constants.signals[signal] ?? 0));
  }
  process.exit(code ?? 0);
});

process.on("disconnect", () => {
  // The parent is gone: stop the command (and anything it started) in the group.
  if (exited) return;
  const group = -process.pid;
  try {
    process.kill(group, "SIGTERM");
  } catch {}
  setTimeout(() => {
    try {
      process.kill(group, "SIGKILL");
    } catch {}
  }, graceMs).unref();
});
