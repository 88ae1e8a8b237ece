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
