/** `tenure status`: groups (members, partitions per member, unowned partitions) beside plain leases. */
import { parseGroupLease } from "../group/names.js";
import type { LeaseInfo } from "../store/types.js";
import { formatDuration } from "./duration.js";

/** One holder of a group's partitions, as `tenure status --json` prints it. */
export interface GroupHolderJson {
  holder: string;
  /** False for a holder with no live member lease (it left or crashed; its partitions expire). */
  member: boolean;
  /** The member's weight, null when not a member. */
  weight: number | null;
  /** Partitions it holds, ascending. */
  partitions: number[];
  /** Time to expiry of its member lease, null when not a member. */
  expiresInMs: number | null;
}

/** A group as `tenure status --json` prints it. */
export interface GroupJson {
  group: string;
  /** Partition count the members declare (the largest, if they disagree). */
  partitions: number;
  /** Every live member, then holders that are not members; by holder. */
  holders: GroupHolderJson[];
  /** Partitions nobody holds now, ascending. */
  unowned: number[];
}

/** Splits `leases` into groups (names with at least one member lease) and the other leases. */
export function splitGroups(leases: readonly LeaseInfo[]): {
  groups: GroupJson[];
  /** The group each grouped lease belongs to. */
  grouped: Map<string, string>;
} {
  const members = new Map<string, LeaseInfo[]>();
  const parsed = leases.map((l) => ({ l, g: parseGroupLease(l.name) }));
  for (const { l, g } of parsed) {
    if (g?.kind !== "member") continue;
    const list = members.get(g.group) ?? [];
    list.push(l);
    members.set(g.group, list);
  }
  const groups: GroupJson[] = [];
  const grouped = new Map<string, string>();
  for (const [group, ms] of [...members].sort((a, b) => a[0].localeCompare(b[0]))) {
    const holders = new Map<string, GroupHolderJson>();
    let partitions = 0;
    for (const l of ms) {
      const g = parseGroupLease(l.name);
      if (g?.kind !== "member") continue;
      grouped.set(l.name, group);
      partitions = Math.max(partitions, g.partitions);
      holders.set(l.holder, {
        holder: l.holder,
        member: true,
        weight: g.weight,
        partitions: [],
        expiresInMs: Math.round(l.expiresInMs),
      });
    }
    const held = new Set<number>();
    for (const { l, g } of parsed) {
      if (g?.kind !== "partition" || g.group !== group) continue;
      grouped.set(l.name, group);
      let h = holders.get(l.holder);
      if (!h) {
        h = { holder: l.holder, member: false, weight: null, partitions: [], expiresInMs: null };
        holders.set(l.holder, h);
      }
      h.partitions.push(g.partition);
      held.add(g.partition);
    }
    const unowned: number[] = [];
    for (let p = 0; p < partitions; p++) if (!held.has(p)) unowned.push(p);
    const list = [...holders.values()].sort(
      (a, b) => Number(b.member) - Number(a.member) || a.holder.localeCompare(b.holder),
    );
    for (const h of list) h.partitions.sort((a, b) => a - b);
    groups.push({ group, partitions, holders: list, unowned });
  }
  return { groups, grouped };
}

/** `0-3,7,9-12`: ascending integers as ranges. */
export function ranges(ns: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    out.push(i === j ? `${ns[i]}` : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return out.join(",");
}

/** A group as text: one summary line, then one row per holder. */
export function formatGroup(
  g: GroupJson,
  table: (head: string[], rows: string[][]) => string,
): string {
  const members = g.holders.filter((h) => h.member).length;
  const head = `group ${g.group}: ${g.partitions} partitions, ${members} member${members === 1 ? "" : "s"}, ${g.unowned.length} unowned${g.unowned.length > 0 ? ` (${ranges(g.unowned)})` : ""}\n`;
  const rows = g.holders.map((h) => [
    `  ${h.holder}`,
    h.member ? String(h.weight) : "-",
    String(h.partitions.length),
    h.expiresInMs === null ? "not a member" : formatDuration(h.expiresInMs),
    ranges(h.partitions) || "-",
  ]);
  return head + table(["  HOLDER", "WEIGHT", "OWNS", "MEMBER EXPIRES IN", "PARTITIONS"], rows);
}
