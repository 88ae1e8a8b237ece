import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../helpers/services.js";

/** The compiled CLI. */
export const TENURE_BIN = join(REPO_ROOT, "dist", "src", "cli", "main.js");

/**
 * The command the tests run under `tenure run`: appends `start TOKEN PID T` when
 * it starts and `end TOKEN PID T` when it ends (on SIGTERM, or by itself).
 * Modes: `forever` (until SIGTERM), `fail` (exit 1 at once), `sleep:MS` (exit 0 after MS).
 */
const CHILD_SOURCE = `
import { appendFileSync } from "node:fs";
const [file, mode = "forever"] = process.argv.slice(2);
const token = process.env.TENURE_TOKEN;
const holder = process.env.TENURE_HOLDER;
const log = (what) => appendFileSync(file, what + " " + token + " " + process.pid + " " + Date.now() + " " + holder + "\\n");
const end = (code) => { log("end"); process.exit(code); };
log("start");
process.on("SIGTERM", () => end(0));
if (mode === "fail") end(1);
else if (mode.startsWith("sleep:")) setTimeout(() => end(0), Number(mode.slice(6)));
else setInterval(() => {}, 1000);
`;

export interface RunRecord {
  token: bigint;
  pid: number;
  holder: string;
  start: number;
  end: number | null;
}

/** Run records as JSON for a failure message (tokens as decimal strings). */
export function formatRuns(runs: readonly RunRecord[]): string {
  return JSON.stringify(runs, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v));
}

/** A tenure process under test. */
export class Tenure {
  readonly proc: ChildProcess;
  stderr = "";
  stdout = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.proc = spawn(process.execPath, [TENURE_BIN, ...args], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TENURE_STORE: "", ...env },
    });
    this.proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
    });
    this.proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
      this.stdout += d;
    });
    this.exited = new Promise((resolve) =>
      this.proc.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      }),
    );
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** Log lines whose message is `msg` (human format: `TIME LEVEL msg key=…`). */
  lines(msg: string): string[] {
    return this.stderr
      .split("\n")
      .filter((l) => new RegExp(`^\\S+ (DEBUG|INFO|WARN|ERROR) +${msg}( |$)`).test(l));
  }

  /** Sends `sig` to the tenure process only (not to its command's group). */
  signal(sig: NodeJS.Signals): void {
    try {
      process.kill(this.pid, sig);
    } catch {}
  }

  /** Process-group ids of every command guard this tenure started. */
  guardPids(): number[] {
    return [...this.stderr.matchAll(/started command .*pid=(\d+)/g)].map((m) => Number(m[1]));
  }
}

/** A temp dir with the child script and a run log; `cleanup()` kills everything started. */
export class Sandbox {
  readonly dir = mkdtempSync(join(tmpdir(), "tenure-cli-"));
  readonly runLog = join(this.dir, "runs.log");
  readonly child = join(this.dir, "child.mjs");
  readonly procs: Tenure[] = [];

  constructor() {
    writeFileSync(this.child, CHILD_SOURCE);
  }

  /** `tenure ARGS…`, tracked for cleanup. */
  tenure(args: string[], env: NodeJS.ProcessEnv = {}): Tenure {
    const t = new Tenure(args, env);
    this.procs.push(t);
    return t;
  }

  /** `tenure run ARGS… -- node child.mjs RUNLOG MODE`. */
  run(args: string[], mode = "forever"): Tenure {
    return this.tenure(["run", ...args, "--", process.execPath, this.child, this.runLog, mode]);
  }

  runs(): RunRecord[] {
    if (!existsSync(this.runLog)) return [];
    const byPid = new Map<number, RunRecord>();
    for (const line of readFileSync(this.runLog, "utf8").split("\n")) {
      const [what, token, pid, t, holder] = line.split(" ");
      if (!what || !token || !pid || !t || !holder) continue;
      if (what === "start")
        byPid.set(Number(pid), {
          token: BigInt(token),
          pid: Number(pid),
          holder,
          start: Number(t),
          end: null,
        });
      else if (what === "end") {
        const r = byPid.get(Number(pid));
        if (r) r.end = Number(t);
      }
    }
    return [...byPid.values()].sort((a, b) => a.start - b.start);
  }

  running(): RunRecord[] {
    return this.runs().filter((r) => r.end === null);
  }

  /** Kills every tenure process and every command group it started; removes the dir. */
  async cleanup(): Promise<void> {
    for (const t of this.procs) {
      for (const g of t.guardPids()) killQuietly(-g);
      if (!t.exit) killQuietly(t.pid);
    }
    for (const r of this.runs()) killQuietly(r.pid);
    await Promise.all(
      this.procs.map((t) => Promise.race([t.exited, new Promise((r) => setTimeout(r, 2000))])),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {}
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Null when runs never overlapped (each ended before the next started, within
 * `boundMs`) and tokens increase (equal only for restarts within one term).
 */
export function checkRuns(runs: RunRecord[], boundMs = 0): string | null {
  for (let i = 1; i < runs.length; i++) {
    const a = runs[i - 1]!;
    const b = runs[i]!;
    if (b.token < a.token || (b.token === a.token && b.holder !== a.holder))
      return `token did not increase: ${a.token} then ${b.token}`;
    if (a.end === null) return `run ${a.pid} (token ${a.token}) never ended but ${b.pid} started`;
    if (b.start < a.end - boundMs)
      return `runs overlapped by ${a.end - b.start} ms: token ${a.token} pid ${a.pid} and token ${b.token} pid ${b.pid}`;
  }
  return null;
}

/** True when a store at `url` answers (for requireService). */
export async function storeAnswers(url: string): Promise<boolean> {
  const { openStore } = await import("../../src/open.js");
  try {
    const s = await openStore(url);
    try {
      const r = await Promise.race([
        s.read("tenure-cli-probe").then(() => true),
        new Promise<boolean>((res) => setTimeout(() => res(false), 3000).unref()),
      ]);
      return r;
    } finally {
      await s.close().catch(() => {});
    }
  } catch {
    return false;
  }
}
