/**
 * SQLite's own faults for the `sqlite` chaos backend (beside the process
 * faults every backend gets). See docs/CHAOS.md, "SQLite storage faults".
 *
 * - `kill-in-tx` / `stop-in-tx`: the leader is caught inside the store's own
 *   fenced write transaction (write lock held, row written, not committed; see
 *   ./faults-sqlite-hook.ts) and SIGKILLed, or SIGSTOPped for 1.3–2.3 ttl and
 *   let go.
 * - `lock-held`: a foreign process (./sqlite-lock-holder.ts) holds the file's
 *   write lock (`BEGIN IMMEDIATE`) for 1.5–2.5 ttl, then rolls back or is
 *   SIGKILLed.
 * - `disk-full`: the database lives on a small tmpfs of its own; the WAL is
 *   checkpointed and truncated, a filler file takes every free byte (real
 *   ENOSPC → SQLITE_FULL) for 1.5–2.5 ttl, then is deleted.
 * - `clock-jump`: one candidate runs under libfaketime with its monotonic
 *   clock untouched (FAKETIME_DONT_FAKE_MONOTONIC=1) and its wall clock jumps
 *   by ±1 min … 1 day while it runs (FAKETIME_TIMESTAMP_FILE).
 * - `clock-skew`: one candidate lives in a time namespace of its own
 *   (`unshare --time`): its CLOCK_MONOTONIC is hours ahead of, or behind, the
 *   others'; then the leader is SIGKILLed so the lease crosses the skew.
 *
 * Each probe runs once per process and a fault this machine cannot make is
 * left out of `faultsFor("sqlite")` (with the reason in `sqliteFaultsMissing`).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadBetterSqlite3, loadNodeSqlite } from "../../src/stores/sqlite/driver.js";
import type { WorkerLine } from "./checker.js";

export const SQLITE_FAULTS = [
  "kill-in-tx",
  "stop-in-tx",
  "lock-held",
  "disk-full",
  "clock-jump",
  "clock-skew",
] as const;
export type SqliteFault = (typeof SQLITE_FAULTS)[number];

export function isSqliteFault(f: string): f is SqliteFault {
  return (SQLITE_FAULTS as readonly string[]).includes(f);
}

const LIBFAKETIME = [
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/faketime/libfaketime.so.1",
].find((p) => existsSync(p));
/** Size of the backend's own tmpfs. */
const TMPFS_SIZE = "16m";

let missing: Map<SqliteFault, string> | undefined;
/** The SQLite faults this machine cannot make, with the reason. */
export function sqliteFaultsMissing(): ReadonlyMap<SqliteFault, string> {
  if (!missing) {
    missing = new Map();
    if (!tmpfsMountable()) {
      missing.set("disk-full", "cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
    }
    if (!LIBFAKETIME)
      missing.set("clock-jump", "libfaketime is not installed (apt-get install faketime)");
    if (spawnSync("unshare", ["--time", "--monotonic=1", "--", "true"]).status !== 0) {
      missing.set(
        "clock-skew",
        "cannot create a time namespace here (unshare --time: needs CAP_SYS_ADMIN)",
      );
    }
  }
  return missing;
}

/** The SQLite faults this machine can make. */
export function sqliteFaultsHere(): SqliteFault[] {
  const m = sqliteFaultsMissing();
  return SQLITE_FAULTS.filter((f) => !m.has(f));
}

function tmpfsMountable(): boolean {
  if (process.getuid?.() !== 0) return false;
  const d = mkdtempSync(join(tmpdir(), "tenure-tmpfs-probe-"));
  try {
    if (spawnSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", d]).status !== 0) return false;
    spawnSync("umount", [d]);
    return true;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

/** The sqlite backend's folder: a small tmpfs of its own where this machine allows one. */
export function sqliteDir(base: string): { dir: string; tmpfs: boolean; cleanup: () => void } {
  const dir = join(base, "sqlite-fs");
  mkdirSync(dir, { recursive: true });
  const tmpfs =
    !sqliteFaultsMissing().has("disk-full") &&
    spawnSync("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_SIZE}`, "tmpfs", dir]).status === 0;
  let mounted = tmpfs;
  const cleanup = () => {
    if (mounted) spawnSync("umount", ["-l", dir]);
    mounted = false;
  };
  // Also when the test runner cancels the file before its after() hooks run.
  if (tmpfs) process.once("exit", cleanup);
  return { dir, tmpfs, cleanup };
}

/** How one candidate process is started: a command in front of `node worker.js`, extra environment. */
export interface Launch {
  prefix: string[];
  env: Record<string, string>;
  /** The worker's `txHook` arm file. */
  txHook?: string;
}

/** The seeded choices of a SQLite fault that must be made before the candidates start. */
export interface SqlitePlan {
  fault: SqliteFault;
  launch: Launch[];
  /** clock-skew: the candidate whose clock differs, by how much, which way. */
  skewed?: { index: number; seconds: number; ahead: boolean };
}

/** Draws what has to be known at spawn time (launch commands) for `fault`. */
export function sqlitePlan(
  fault: SqliteFault,
  r: () => number,
  candidates: number,
  dir: string,
  id: string,
): SqlitePlan {
  const plain = (): Launch => ({ prefix: [], env: {} });
  const launch = Array.from({ length: candidates }, plain);
  if (fault === "kill-in-tx" || fault === "stop-in-tx") {
    launch.forEach((l, i) => {
      l.txHook = join(dir, `arm-${id}-${i}`);
    });
  } else if (fault === "clock-jump") {
    launch.forEach((l, i) => {
      const file = join(dir, `faketime-${id}-${i}`);
      writeFileSync(file, "+0\n");
      l.env = {
        LD_PRELOAD: LIBFAKETIME ?? "",
        FAKETIME_TIMESTAMP_FILE: file,
        FAKETIME_DONT_FAKE_MONOTONIC: "1",
        FAKETIME_NO_CACHE: "1",
      };
    });
  } else if (fault === "clock-skew") {
    const index = Math.floor(r() * candidates);
    const seconds = 60 + Math.floor(r() * 86_340);
    const ahead = r() < 0.5;
    launch.forEach((l, i) => {
      const offset = (i === index) === ahead ? seconds : 0;
      if (offset > 0) {
        l.prefix = ["unshare", "--time", `--monotonic=${offset}`, `--boottime=${offset}`, "--"];
      }
    });
    return { fault, launch, skewed: { index, seconds, ahead } };
  }
  return { fault, launch };
}

/** What the harness knows of a candidate. */
export interface Cand {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly lines: WorkerLine[];
  readonly alive: boolean;
  paused: boolean;
  leading(): boolean;
  has(event: string, after?: bigint): boolean;
}

export interface SqliteFaultCtx {
  plan: SqlitePlan;
  r: () => number;
  ttlMs: number;
  dbFile: string;
  cands: readonly Cand[];
  lead: Cand;
  deaths: { pid: number; t: string }[];
  pauses: { pid: number; from: string; to: string }[];
}

const now = () => process.hrtime.bigint();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Injects one SQLite fault and heals it. */
export async function runSqliteFault(
  ctx: SqliteFaultCtx,
): Promise<{ detail: string; faultAt: bigint; healAt: bigint; windowEnd?: bigint }> {
  const { plan, r, ttlMs, lead, cands } = ctx;
  switch (plan.fault) {
    case "kill-in-tx":
    case "stop-in-tx": {
      const arm = plan.launch[cands.indexOf(lead)]!.txHook!;
      const armedAt = now();
      writeFileSync(arm, "");
      try {
        await until(
          "the leader inside its fenced write transaction",
          () => lead.has("in-tx", armedAt),
          5000,
        );
        const faultAt = now();
        if (plan.fault === "kill-in-tx") {
          lead.proc.kill("SIGKILL");
          ctx.deaths.push({ pid: lead.pid, t: faultAt.toString() });
          return {
            detail:
              "SIGKILL leader inside its write transaction (lock held, row written, not committed)",
            faultAt,
            healAt: faultAt,
          };
        }
        const ms = Math.round(ttlMs * (1.3 + r()));
        lead.paused = true;
        lead.proc.kill("SIGSTOP");
        await sleep(ms); // the fault's length
        unlinkSync(arm);
        const to = now();
        lead.proc.kill("SIGCONT");
        lead.paused = false;
        ctx.pauses.push({ pid: lead.pid, from: faultAt.toString(), to: to.toString() });
        // Nobody can write while it holds the lock: the fleet recovers from the SIGCONT.
        return {
          detail: `SIGSTOP leader for ${ms} ms inside its write transaction (lock held)`,
          faultAt,
          healAt: to,
        };
      } finally {
        rmSync(arm, { force: true });
      }
    }
    case "lock-held": {
      const holder = spawn(process.execPath, [HOLDER, ctx.dbFile], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let said = "";
      holder.stdout!.on("data", (d: Buffer) => {
        said += d.toString();
      });
      let err = "";
      holder.stderr!.on("data", (d: Buffer) => {
        err += d.toString();
      });
      const exited = new Promise<void>((res) => holder.once("exit", () => res()));
      try {
        await until(
          "the foreign process to take the write lock",
          () => said.includes("locked") || holder.exitCode !== null,
          15_000,
        );
        if (!said.includes("locked"))
          throw new Error(`the lock holder exited: ${err.slice(0, 300)}`);
        const faultAt = now();
        const ms = Math.round(ttlMs * (1.5 + r()));
        const kill = r() < 0.5;
        await sleep(ms); // the fault's length
        holder.kill(kill ? "SIGKILL" : "SIGTERM");
        await exited;
        return {
          detail: `a foreign process held the write lock (BEGIN IMMEDIATE) for ${ms} ms, then ${kill ? "was SIGKILLed" : "rolled back"}`,
          faultAt,
          healAt: now(),
        };
      } finally {
        if (holder.exitCode === null && holder.signalCode === null) holder.kill("SIGKILL");
      }
    }
    case "disk-full": {
      const filler = join(ctx.dbFile, "..", "filler");
      const truncated = await checkpointTruncate(ctx.dbFile);
      const faultAt = now();
      const bytes = fill(filler);
      const ms = Math.round(ttlMs * (1.5 + r()));
      try {
        await sleep(ms); // the fault's length
      } finally {
        rmSync(filler, { force: true });
      }
      return {
        detail: `file system full (${Math.round(bytes / 1024)} KiB filler, WAL ${truncated ? "truncated" : "NOT truncated"} first) for ${ms} ms`,
        faultAt,
        healAt: now(),
      };
    }
    case "clock-jump": {
      const i =
        r() < 0.5
          ? cands.indexOf(lead)
          : (cands.indexOf(lead) + 1 + Math.floor(r() * (cands.length - 1))) % cands.length;
      const c = cands[i]!;
      const sign = r() < 0.5 ? "-" : "+";
      const seconds = 60 + Math.floor(r() * 86_340);
      const faultAt = now();
      writeFileSync(plan.launch[i]!.env.FAKETIME_TIMESTAMP_FILE!, `${sign}${seconds}s\n`);
      // Its wall clock must have moved: its probe answer carries its Date.now().
      const want = (sign === "+" ? 1 : -1) * seconds * 1000;
      const deadline = Date.now() + 5000;
      for (;;) {
        const at = now();
        const sentWall = Date.now();
        c.proc.kill("SIGUSR2");
        const answer = () =>
          c.lines.filter((l) => l.event === "state" && BigInt(l.t) >= at).at(-1) as
            | (WorkerLine & { wall?: number })
            | undefined;
        await until("the jumped candidate's answer", () => !!answer(), 2000);
        const seen = (answer()!.wall ?? 0) - sentWall;
        if (Math.abs(seen - want) < 5000) break;
        if (Date.now() > deadline) {
          throw new Error(`candidate ${c.pid}'s wall clock did not jump (off by ${seen} ms)`);
        }
        await sleep(50);
      }
      await sleep(Math.round(ttlMs * (1.5 + r()))); // a while with the jumped clock
      return {
        detail: `wall clock of ${c === lead ? "the leader" : "a follower"} jumped ${sign}${seconds} s (libfaketime, monotonic untouched)`,
        faultAt,
        healAt: faultAt,
        // Nobody is probed during that while: a time to balance counts from its end.
        windowEnd: now(),
      };
    }
    case "clock-skew": {
      const s = plan.skewed!;
      const faultAt = now();
      lead.proc.kill("SIGKILL");
      ctx.deaths.push({ pid: lead.pid, t: faultAt.toString() });
      const who = cands.indexOf(lead) === s.index ? "the skewed leader" : "the leader";
      return {
        detail: `candidate ${s.index}'s CLOCK_MONOTONIC ${s.ahead ? "ahead of" : "behind"} the others' by ${s.seconds} s (time namespace); SIGKILL ${who}`,
        faultAt,
        healAt: faultAt,
      };
    }
  }
}

const HOLDER = fileURLToPath(new URL("./sqlite-lock-holder.js", import.meta.url));

/** Fills the file system of `file` until ENOSPC; returns the bytes written. */
function fill(file: string): number {
  const fd = openSync(file, "w");
  let total = 0;
  try {
    for (let chunk = 1 << 20; chunk >= 512; chunk >>= 1) {
      const buf = Buffer.alloc(chunk, 0x5a);
      for (;;) {
        try {
          total += writeSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

type Raw = {
  exec(sql: string): void;
  get(sql: string): Record<string, unknown> | undefined;
  close(): void;
};

async function raw(file: string): Promise<Raw> {
  const DatabaseSync = await loadNodeSqlite();
  if (DatabaseSync) {
    const db = new DatabaseSync(file);
    return {
      exec: (sql) => db.exec(sql),
      get: (sql) => db.prepare(sql).get() as Record<string, unknown> | undefined,
      close: () => db.close(),
    };
  }
  const Database = await loadBetterSqlite3();
  if ("error" in Database) throw new Error(Database.error);
  const db = new Database(file);
  return {
    exec: (sql) => db.exec(sql),
    get: (sql) => db.prepare(sql).get() as Record<string, unknown> | undefined,
    close: () => db.close(),
  };
}

/**
 * Whether some process holds `file`'s write lock for all of `forMs`: tries
 * `BEGIN IMMEDIATE` (no busy wait) every 5 ms and rolls back at once when
 * it gets the lock. A process stopped (SIGSTOP) inside a write transaction
 * holds it until it resumes; anyone else's transaction takes a few ms.
 */
export async function writeLockHeld(file: string, forMs = 200): Promise<boolean> {
  const db = await raw(file);
  try {
    db.exec("PRAGMA busy_timeout = 0");
    const end = Date.now() + forMs;
    for (;;) {
      try {
        db.exec("BEGIN IMMEDIATE");
        db.exec("ROLLBACK");
        return false;
      } catch (e) {
        if (!/busy|locked/i.test((e as Error).message)) throw e;
      }
      if (Date.now() >= end) return true;
      await sleep(5); // between tries: a bounded poll
    }
  } finally {
    db.close();
  }
}

/** Checkpoints the WAL into the database and truncates it, so the next write must grow it. */
async function checkpointTruncate(file: string): Promise<boolean> {
  const db = await raw(file);
  try {
    db.exec("PRAGMA busy_timeout = 1000");
    const row = db.get("PRAGMA wal_checkpoint(TRUNCATE)");
    return row?.busy === 0 || row?.busy === 0n;
  } finally {
    db.close();
  }
}

/** `PRAGMA integrity_check` of the database: "ok" or what it found. */
export async function integrity(file: string): Promise<string> {
  const db = await raw(file);
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    const row = db.get("PRAGMA integrity_check");
    return String(row ? Object.values(row)[0] : "no answer");
  } finally {
    db.close();
  }
}
