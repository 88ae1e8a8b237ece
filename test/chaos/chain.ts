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
 * not received them: after the loss the chain goes on from the replica's last
 * value V0 (the lowest `prev` read after `lostAt`), so values written before
 * `lostAt` with a larger `seq` than V0's, never read or written after it,
 * were on the failed server only. They are not in the store's history (as
 * rows committed on a crashed PostgreSQL primary are not in the promoted
 * standby's table). Empty when nothing was read after the loss.
 */
export function lostChainValues(
  lines: readonly { event: string; t: string; value?: string; prev?: string | null }[],
  lostAt: bigint,
  last: string | null,
): Set<string> {
  const after = new Set<string>();
  let v0: bigint | null = null;
  for (const l of lines) {
    if (BigInt(l.t) <= lostAt) continue;
    if (l.event === "wrote" && l.value) after.add(l.value);
    if (typeof l.prev === "string") {
      after.add(l.prev);
      const p = parseChainValue(l.prev);
      if (p && (v0 === null || p.seq < v0)) v0 = p.seq;
    }
  }
  if (last !== null) after.add(last);
  const lost = new Set<string>();
  if (v0 === null) return lost;
  for (const l of lines) {
    if (BigInt(l.t) > lostAt) continue;
    for (const v of [l.event === "wrote" ? l.value : undefined, l.prev]) {
      if (typeof v !== "string" || after.has(v)) continue;
      const p = parseChainValue(v);
      if (p && p.seq > v0) lost.add(v);
    }
  }
  return lost;
}
