/**
 * The host clock the SQLite store judges expiry by: CLOCK_MONOTONIC of the
 * host, the same instant for every process that shares the file.
 *
 * Two things can make one process's CLOCK_MONOTONIC differ from another's on
 * the same host, and both would let one process read a live lease as expired
 * (and take it while its holder still trusts it) or keep a dead one alive:
 *
 * - A time namespace (`unshare --time`, containers restored by CRIU) adds a
 *   fixed offset to CLOCK_MONOTONIC and CLOCK_BOOTTIME. The kernel lists the
 *   offsets in /proc/self/timens_offsets; they are subtracted here, so every
 *   namespace reads the host's clock.
 * - A preloaded clock faker (libfaketime's `faketime`, which by default moves
 *   CLOCK_MONOTONIC with the wall clock) lies inside the process. It cannot
 *   touch what the kernel prints in /proc/uptime (CLOCK_BOOTTIME, which is
 *   never behind CLOCK_MONOTONIC: it also counts suspended time), so a
 *   monotonic clock ahead of the boot clock is refused when the store opens.
 */
import { readFileSync } from "node:fs";

/** How far CLOCK_MONOTONIC may read ahead of /proc/uptime before it counts as faked (ms). */
export const CLOCK_AHEAD_TOLERANCE_MS = 1000n;

/** Offsets of this process's time namespace in ms (0 outside one, or off Linux). */
export interface TimeNamespaceOffsets {
  monotonicMs: bigint;
  boottimeMs: bigint;
}

/** Parses /proc/self/timens_offsets ("monotonic <s> <ns>" / "boottime <s> <ns>"). */
export function parseTimensOffsets(text: string): TimeNamespaceOffsets {
  const out = { monotonicMs: 0n, boottimeMs: 0n };
  for (const line of text.split("\n")) {
    const m = /^\s*(monotonic|boottime|1|7)\s+(-?\d+)\s+(\d+)\s*$/.exec(line);
    if (!m) continue;
    const ms = BigInt(m[2]!) * 1000n + BigInt(m[3]!) / 1_000_000n;
    if (m[1] === "monotonic" || m[1] === "1") out.monotonicMs = ms;
    else out.boottimeMs = ms;
  }
  return out;
}

let offsets: TimeNamespaceOffsets | undefined;
/** This process's time-namespace offsets, read once (a process cannot change its namespace's offsets). */
export function timensOffsets(): TimeNamespaceOffsets {
  if (!offsets) {
    try {
      offsets = parseTimensOffsets(readFileSync("/proc/self/timens_offsets", "utf8"));
    } catch {
      offsets = { monotonicMs: 0n, boottimeMs: 0n };
    }
  }
  return offsets;
}

/** The host's CLOCK_MONOTONIC in whole milliseconds (this process's time-namespace offset removed). */
export function hostMonotonicMs(): bigint {
  return process.hrtime.bigint() / 1_000_000n - timensOffsets().monotonicMs;
}

/** The host's CLOCK_BOOTTIME in ms as the kernel prints it in /proc/uptime (10 ms steps), or null off Linux. */
export function hostBoottimeMs(): bigint | null {
  let text: string;
  try {
    text = readFileSync("/proc/uptime", "utf8");
  } catch {
    return null;
  }
  const m = /^(\d+)\.(\d{2})\s/.exec(text);
  if (!m) return null;
  return BigInt(m[1]!) * 1000n + BigInt(m[2]!) * 10n - timensOffsets().boottimeMs;
}

/**
 * Why this process's monotonic clock cannot be trusted to mean the same
 * instant as every other process's, or null. Reads the boot clock after the
 * monotonic one, so an honest clock is never ahead by more than the boot
 * clock's 10 ms step.
 */
export function fakedClockReason(
  mono: () => bigint = hostMonotonicMs,
  boot: () => bigint | null = hostBoottimeMs,
): string | null {
  const m = mono();
  const b = boot();
  if (b === null) return null;
  if (m - b <= CLOCK_AHEAD_TOLERANCE_MS) return null;
  return `this process's CLOCK_MONOTONIC reads ${m} ms, ${m - b} ms ahead of the kernel's boot clock (/proc/uptime: ${b} ms), which it can never be: the clock is faked (LD_PRELOAD libfaketime? run faketime with FAKETIME_DONT_FAKE_MONOTONIC=1)`;
}

/** The kernel's boot id, or `"unknown"` off Linux. */
export function hostBootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || "unknown";
  } catch {
    return "unknown";
  }
}
