/** The `put-fenced` chain of the chaos worker's fenced writes (see worker.ts). */

/** The key of the `put-fenced` chain. */
export const CHAIN_KEY = "chaos-chain";

/**
 * A value of the `put-fenced` chain: `seq token pid t`. `seq` is the previous
 * value's plus one; a chain that starts empty (first write, or after a store
 * lost its data) starts at the writer's monotonic ns, larger than any earlier
 * chain's numbers, so `seq` orders every accepted write by commit.
 */
export function chainValue(seq: bigint, token: bigint, pid: number, t: string): string {
  return `${seq} ${token} ${pid} ${t}`;
}

/** Parses a chain value (null when it is not one). */
export function parseChainValue(
  v: string,
): { seq: bigint; token: string; pid: number; t: string } | null {
  const m = /^(\d+) (\d+) (\d+) (\d+)$/.exec(v);
  if (!m) return null;
  return { seq: BigInt(m[1]!), token: m[2]!, pid: Number(m[3]), t: m[4]! };
}

/**
 * The chain values a server lost when it failed over to a replica that had
 * not received them. The store's history is the chain that ends at its last
 * value (`last`), followed back through the `prev` each write named: a
 * compare-and-set chain cannot fork unless a server lost writes. Values above
 * the lowest one that walk reaches, but not on it, were written on the failed
 * server only (a paused writer may print such a write only after the loss);
 * they are not in the store's history, as rows committed on a crashed
 * PostgreSQL primary are not in the promoted standby's table. Empty when the
 * last value is unknown.
 */
export function lostChainValues(
  lines: readonly { event: string; value?: string; prev?: string | null }[],
  last: string | null,
): Set<string> {
  const prevOf = new Map<string, string | null>();
  const all = new Set<string>();
  for (const l of lines) {
    if (l.event === "wrote" && l.value) {
      prevOf.set(l.value, l.prev ?? null);
      all.add(l.value);
    }
    if (typeof l.prev === "string") all.add(l.prev);
  }
  const reached = new Set<string>();
  let low: bigint | null = null;
  for (let v = last; v !== null && !reached.has(v); v = prevOf.get(v) ?? null) {
    reached.add(v);
    const p = parseChainValue(v);
    if (p && (low === null || p.seq < low)) low = p.seq;
    if (!prevOf.has(v)) break;
  }
  const lost = new Set<string>();
  if (low === null) return lost;
  for (const v of all) {
    const p = parseChainValue(v);
    if (p && p.seq > low && !reached.has(v)) lost.add(v);
  }
  return lost;
}
