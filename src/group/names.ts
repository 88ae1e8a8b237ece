/**
 * The lease names of a group, in one place: the group writes them, and
 * `tenure status` reads them back to show groups beside plain leases.
 *
 * - `NAME/members/P/WEIGHT/HASH16`: one member lease per process.
 * - `NAME/p/K`: the lease of partition K.
 */

/** Member lease name of a member with `partitions`, `weight` and the 16-hex-digit `hash` of its holder id. */
export function memberLeaseName(
  group: string,
  partitions: number,
  weight: number,
  hash: string,
): string {
  return `${group}/members/${partitions}/${weight}/${hash}`;
}

/** Lease name of partition `p` of `group`. */
export function partitionLeaseName(group: string, p: number): string {
  return `${group}/p/${p}`;
}

const MEMBER = /^members\/([0-9]+)\/([0-9]+)\/[0-9a-f]{16}$/;
const PARTITION = /^p\/(0|[1-9][0-9]*)$/;

/** What the part of a lease name after `GROUP/` says, or null when it is not a group lease. */
export type GroupLeaseTail =
  | { readonly kind: "member"; readonly partitions: number; readonly weight: number }
  | { readonly kind: "partition"; readonly partition: number };

/** Parses the part of a lease name after `GROUP/`. */
export function parseGroupLeaseTail(rest: string): GroupLeaseTail | null {
  const m = MEMBER.exec(rest);
  if (m) return { kind: "member", partitions: Number(m[1]), weight: Number(m[2]) };
  const q = PARTITION.exec(rest);
  if (q) return { kind: "partition", partition: Number(q[1]) };
  return null;
}

/**
 * Parses a whole lease name as a group lease: `{ group, … }`, or null. The
 * group name may itself contain `/`; the member and partition suffixes are
 * anchored at the end.
 */
export function parseGroupLease(
  name: string,
): (GroupLeaseTail & { readonly group: string }) | null {
  const m = /^(.+)\/(members\/[0-9]+\/[0-9]+\/[0-9a-f]{16})$/.exec(name);
  const q = m ? null : /^(.+)\/(p\/(?:0|[1-9][0-9]*))$/.exec(name);
  const hit = m ?? q;
  if (!hit) return null;
  const tail = parseGroupLeaseTail(hit[2]!);
  return tail ? { group: hit[1]!, ...tail } : null;
}
