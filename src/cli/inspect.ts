import { errorMessage, isStoreError } from "../errors.js";
import type { Logger } from "../logger.js";
import { RepeatLimiter } from "../logger.js";
import { redactSecrets } from "../store/classify.js";
import type { InvalidLease, LeaseAdmin, LeaseCore, LeaseInfo } from "../store/types.js";
import { formatDuration } from "./duration.js";
import { CliExit, EXIT } from "./exit-codes.js";
import { formatGroup, splitGroups } from "./group-status.js";

type Out = { write(s: string): unknown };

/** A lease as printed with `--json`: tokens as strings (they can exceed 2^53). */
export interface LeaseJson {
  name: string;
  holder: string | null;
  token: string | null;
  expiresInMs: number | null;
  /** Only for a record that is not a valid lease: what is wrong with it. */
  problem?: string;
  /** Only for a member or partition lease of a group: the group's name. */
  group?: string;
}

function toJson(name: string, l: LeaseInfo | null): LeaseJson {
  return l
    ? {
        name: l.name,
        holder: l.holder,
        token: l.token.toString(),
        expiresInMs: Math.round(l.expiresInMs),
      }
    : { name, holder: null, token: null, expiresInMs: null };
}

/** Formats rows as a left-aligned table with a header. */
function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n") + "\n";
}

/** `tenure status [NAME] [--json]`. */
export async function statusCommand(
  store: LeaseAdmin & Pick<LeaseCore, "read">,
  name: string | undefined,
  json: boolean,
  out: Out,
): Promise<number> {
  if (name !== undefined) {
    const l = await store.read(name);
    if (!l) {
      // NAME may be a group: its leases are NAME/members/… and NAME/p/K.
      const g = splitGroups(await store.list()).groups.find((x) => x.group === name);
      if (g) {
        out.write(json ? `${JSON.stringify(g)}\n` : formatGroup(g, table));
        return EXIT.OK;
      }
    }
    if (json) out.write(`${JSON.stringify(toJson(name, l))}\n`);
    else if (!l) out.write(`${name}: no leader\n`);
    else
      out.write(
        table(
          ["NAME", "HOLDER", "TOKEN", "EXPIRES IN"],
          [[l.name, l.holder, l.token.toString(), formatDuration(l.expiresInMs)]],
        ),
      );
    return EXIT.OK;
  }
  // A bad record is named with what is wrong with it; it does not hide the good leases.
  const invalid: InvalidLease[] = [];
  const all = (await store.list({ onInvalid: (b) => invalid.push(b) })).sort((a, b) =>
    a.name.localeCompare(b.name),
  );
  invalid.sort((a, b) => a.name.localeCompare(b.name));
  const { groups, grouped } = splitGroups(all);
  if (json) {
    const bad = invalid.map((b): LeaseJson => ({ ...toJson(b.name, null), problem: b.problem }));
    const good = all.map((l): LeaseJson => {
      const group = grouped.get(l.name);
      return group === undefined ? toJson(l.name, l) : { ...toJson(l.name, l), group };
    });
    out.write(`${JSON.stringify([...good, ...bad])}\n`);
  } else {
    // A group's member and partition leases are summed up per group, not listed one by one.
    const plain = all.filter((l) => !grouped.has(l.name));
    if (all.length === 0) out.write("no leases are held\n");
    else if (plain.length > 0)
      out.write(
        table(
          ["NAME", "HOLDER", "TOKEN", "EXPIRES IN"],
          plain.map((l) => [l.name, l.holder, l.token.toString(), formatDuration(l.expiresInMs)]),
        ),
      );
    groups.forEach((g, i) => {
      out.write(`${plain.length > 0 || i > 0 ? "\n" : ""}${formatGroup(g, table)}`);
    });
    for (const b of invalid) out.write(`${b.name}: not a valid lease: ${b.problem}\n`);
  }
  return invalid.length > 0 ? EXIT.DATAERR : EXIT.OK;
}

/** `tenure release NAME --force` (the caller has checked --force). */
export async function releaseCommand(
  store: LeaseAdmin & Pick<LeaseCore, "read">,
  name: string,
  out: Out,
): Promise<number> {
  const before = await store.read(name);
  const released = await store.forceRelease(name);
  if (released) {
    out.write(
      before
        ? `released ${name} (was held by ${before.holder}, token ${before.token})\n`
        : `released ${name}\n`,
    );
  } else {
    out.write(`${name} was not held; nothing to release\n`);
  }
  return EXIT.OK;
}

/** Poll interval of `tenure watch` (also used alongside store notifications). */
export const WATCH_POLL_MS = 250;

/**
 * `tenure watch NAME [--json]`: prints the leader now and on every change
 * until `signal` aborts. Uses the store's notifications when it has them and
 * polls every {@link WATCH_POLL_MS} as well. Store errors are logged once per
 * streak and polling carries on.
 */
export async function watchCommand(
  store: LeaseCore,
  name: string,
  json: boolean,
  out: Out,
  log: Logger,
  signal: AbortSignal,
): Promise<number> {
  let last: string | undefined;
  const repeat = new RepeatLimiter();
  let wake: (() => void) | null = null;
  const check = async () => {
    let l: LeaseInfo | null;
    try {
      l = await store.read(name);
    } catch (e) {
      const hit = repeat.hit(errorMessage(e));
      if (hit)
        log.warn("cannot read lease; retrying", {
          lease: name,
          err: errorMessage(e),
          ...(hit.suppressed ? { suppressed: hit.suppressed } : {}),
        });
      return;
    }
    if (repeat.reset() > 0) log.info("store reachable again", { lease: name });
    const key = l ? `${l.holder}\u0000${l.token}` : "";
    if (key === last) return;
    last = key;
    const time = new Date().toISOString();
    if (json) out.write(`${JSON.stringify({ time, ...toJson(name, l) })}\n`);
    else if (l)
      out.write(
        `${time} ${name}: leader ${l.holder} token ${l.token} (expires in ${formatDuration(l.expiresInMs)})\n`,
      );
    else out.write(`${time} ${name}: no leader\n`);
  };
  let unwatch: (() => Promise<void>) | null = null;
  if (store.notifies && store.watch) {
    try {
      unwatch = await store.watch(name, () => wake?.());
    } catch (e) {
      log.warn("cannot watch lease; polling", { lease: name, err: errorMessage(e) });
    }
  }
  try {
    while (!signal.aborted) {
      await check();
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, WATCH_POLL_MS);
        function done() {
          clearTimeout(t);
          signal.removeEventListener("abort", done);
          wake = null;
          resolve();
        }
        wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  } finally {
    await unwatch?.().catch(() => {});
  }
  return EXIT.OK;
}

/**
 * Wraps a store failure during status/watch/release as a runtime error. A
 * store that answered with a record that is not a valid lease is not
 * "unavailable": that is {@link EXIT.DATAERR}, naming the record.
 */
export function storeFailure(e: unknown): CliExit {
  if (isStoreError(e) && e.kind === "schema") {
    return new CliExit(EXIT.DATAERR, `store holds bad data: ${redactSecrets(errorMessage(e))}`);
  }
  return new CliExit(EXIT.UNAVAILABLE, `store failed: ${redactSecrets(errorMessage(e))}`);
}
