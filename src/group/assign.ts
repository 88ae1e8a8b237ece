/**
 * The assignment rule of a group: which live member should own which
 * partition. A pure function of the membership (and, for stickiness, of who
 * holds what now), so every member computes the same target from the same view
 * without a coordinator. See docs/groups.md.
 */

/** One live member as the assignment sees it. */
export interface AssignMember {
  /** The member's holder id. */
  readonly id: string;
  /** Relative weight, > 0. A member of weight 2 owns about twice as many partitions as one of weight 1. */
  readonly weight: number;
}

/** 32-bit FNV-1a of a string. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's 32-bit finaliser: a good avalanche for one word. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A stable 32-bit hash of a member id (the tie-breaker everywhere). */
export function memberHash(id: string): number {
  return fmix32(fnv1a(id));
}

/**
 * Weighted rendezvous score of `(partition, member)`: `−weight / ln(u)` with
 * `u` uniform in (0, 1) from a hash of both. Higher wins. Without quotas, the
 * member with the top score owns a partition with probability weight / Σweight.
 */
export function score(partition: number, memberHashValue: number, weight: number): number {
  const a = fmix32(memberHashValue ^ fmix32(Math.imul(partition + 1, 0x9e3779b1)));
  const b = fmix32(a ^ 0x5bd1e995 ^ partition);
  // 52 random bits, never 0 or 1.
  const u = ((a >>> 6) * 67_108_864 + (b >>> 6) + 0.5) / 4_503_599_627_370_496;
  return -weight / Math.log(u);
}

function compareMembers(a: { id: string; hash: number }, b: { id: string; hash: number }): number {
  if (a.hash !== b.hash) return a.hash - b.hash;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * How many partitions each member should own: its exact share `P·w/Σw`
 * rounded down, and the partitions left over go one each to the members with
 * the largest fractional parts, then to those holding at least their
 * rounded-up share now (so a join moves no more than it must), then by member
 * hash. Equal weights ⇒ every member
 * gets ⌊P/M⌋ or ⌈P/M⌉. Sums to `partitions` when there is at least one member.
 */
export function quotas(
  partitions: number,
  members: readonly AssignMember[],
  held: ReadonlyMap<string, number> = new Map(),
): Map<string, number> {
  const out = new Map<string, number>();
  if (members.length === 0) return out;
  const total = members.reduce((s, m) => s + m.weight, 0);
  const rows = members.map((m) => {
    const exact = (partitions * m.weight) / total;
    const base = Math.floor(exact + 1e-9);
    return {
      id: m.id,
      hash: memberHash(m.id),
      base,
      frac: exact - base,
      // Holding the rounded-up share or more counts the same: while old
      // members hand partitions over their counts shift, and a leftover that
      // followed the larger count would flip between them (one old member
      // dropping a partition another then takes).
      held: Math.min(held.get(m.id) ?? 0, base + 1),
    };
  });
  let left = partitions - rows.reduce((s, r) => s + r.base, 0);
  const order = [...rows].sort(
    (a, b) => b.frac - a.frac || b.held - a.held || compareMembers(a, b),
  );
  for (const r of order) {
    if (left <= 0) break;
    r.base += 1;
    left -= 1;
  }
  for (const r of rows) out.set(r.id, r.base);
  return out;
}

/**
 * The target owner of every partition `0 … partitions − 1` (an array of member
 * ids; empty when there are no members).
 *
 * - **Balanced**: member `m` owns exactly `quotas(…)[m]` partitions.
 * - **Sticky**: with `holders` (the live holder of each partition, or null),
 *   a member keeps what it holds up to its quota (its highest-scoring ones);
 *   only partitions that are free, held by a non-member, or over a quota move,
 *   and they go to members below quota. So a join moves exactly the joiner's
 *   quota (≤ ⌈P/M⌉ with equal weights) and a leave moves exactly the leaver's
 *   partitions.
 * - **Deterministic**: the same membership and holders give the same target,
 *   whatever their order. Free partitions go by weighted rendezvous score
 *   (highest `(partition, member)` pair first, among members with room).
 */
export function assignPartitions(
  partitions: number,
  members: readonly AssignMember[],
  holders: readonly (string | null | undefined)[] = [],
): string[] {
  if (members.length === 0) return [];
  const sorted = [...new Map(members.map((m) => [m.id, m])).values()]
    .map((m) => ({ ...m, hash: memberHash(m.id) }))
    .sort(compareMembers);
  const index = new Map(sorted.map((m, i) => [m.id, i]));
  const heldCount = new Map<string, number>();
  for (let p = 0; p < partitions; p++) {
    const h = holders[p];
    if (h != null && index.has(h)) heldCount.set(h, (heldCount.get(h) ?? 0) + 1);
  }
  const quota = quotas(partitions, sorted, heldCount);
  const room = sorted.map((m) => quota.get(m.id) ?? 0);
  const owner: (number | -1)[] = new Array(partitions).fill(-1);

  // 1. Keep: each member keeps what it holds, up to its quota, best-scoring first.
  const kept: number[][] = sorted.map(() => []);
  for (let p = 0; p < partitions; p++) {
    const h = holders[p];
    const i = h == null ? undefined : index.get(h);
    if (i !== undefined) kept[i]!.push(p);
  }
  sorted.forEach((m, i) => {
    const mine = kept[i]!;
    if (mine.length > room[i]!) {
      const s = new Map(mine.map((p) => [p, score(p, m.hash, m.weight)]));
      mine.sort((a, b) => s.get(b)! - s.get(a)! || a - b);
      mine.length = room[i]!;
    }
    for (const p of mine) owner[p] = i;
    room[i]! -= mine.length;
  });

  // 2. Place the rest: highest rendezvous pair first, among members with room. Each free
  // partition waits in a max-heap under its best pair; a pair whose member filled up meanwhile
  // is replaced by the partition's best remaining one. Same result as sorting every pair.
  const heap: { p: number; i: number; s: number }[] = [];
  const before = (a: { p: number; i: number; s: number }, b: typeof a) =>
    a.s > b.s || (a.s === b.s && (a.p < b.p || (a.p === b.p && a.i < b.i)));
  const push = (e: { p: number; i: number; s: number }) => {
    heap.push(e);
    let k = heap.length - 1;
    while (k > 0) {
      const up = (k - 1) >> 1;
      if (!before(heap[k]!, heap[up]!)) break;
      [heap[k], heap[up]] = [heap[up]!, heap[k]!];
      k = up;
    }
  };
  const pop = () => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let k = 0;
      for (;;) {
        const l = 2 * k + 1;
        const r = l + 1;
        let m = k;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === k) break;
        [heap[k], heap[m]] = [heap[m]!, heap[k]!];
        k = m;
      }
    }
    return top;
  };
  const best = (p: number) => {
    let top: { p: number; i: number; s: number } | null = null;
    for (let i = 0; i < sorted.length; i++) {
      if (room[i]! <= 0) continue;
      const e = { p, i, s: score(p, sorted[i]!.hash, sorted[i]!.weight) };
      if (!top || before(e, top)) top = e;
    }
    return top;
  };
  for (let p = 0; p < partitions; p++) {
    if (owner[p] !== -1) continue;
    const e = best(p);
    if (e) push(e);
  }
  while (heap.length > 0) {
    const e = pop();
    if (room[e.i]! > 0) {
      owner[e.p] = e.i;
      room[e.i]! -= 1;
    } else {
      const again = best(e.p);
      if (again) push(again);
    }
  }
  return owner.map((i) => sorted[i]!.id);
}
