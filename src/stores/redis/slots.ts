/**
 * The per-Cluster-slot batching of the Redis store's batch operations
 * (acquireMany, renewMany): in Redis Cluster the keys of one script call must
 * hash to one slot, so a batch is split per slot and the calls go out
 * together; elsewhere the whole batch is one call.
 */

/**
 * Runs `call` once per hash slot of the items (once for all of them when
 * `cluster` is false) and parses each reply back into its item's place.
 */
export async function perSlot<I, R>(
  cluster: boolean,
  items: readonly I[],
  leaseKey: (item: I) => string,
  call: (items: readonly I[]) => Promise<unknown[]>,
  parse: (item: I, reply: unknown) => R,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  if (!cluster) {
    // One call for the whole batch, no index lists.
    const replies = await call(items);
    for (let i = 0; i < items.length; i++) out[i] = parse(items[i]!, replies[i]);
    return out;
  }
  const groups = bySlot(items, leaseKey);
  await Promise.all(
    groups.map(async (idx) => {
      const replies = await call(idx.map((i) => items[i]!));
      for (const [j, i] of idx.entries()) out[i] = parse(items[i]!, replies[j]);
    }),
  );
  return out;
}

/** Item indexes grouped by the Cluster hash slot of their lease key. */
function bySlot<I>(items: readonly I[], leaseKey: (item: I) => string): number[][] {
  const groups = new Map<number, number[]>();
  for (const [i, it] of items.entries()) {
    const slot = hashSlot(leaseKey(it));
    const g = groups.get(slot);
    if (g) g.push(i);
    else groups.set(slot, [i]);
  }
  return [...groups.values()];
}

/** Redis Cluster's hash slot of a key: CRC16 (XMODEM) of its hash tag (or the whole key), mod 16384. */
export function hashSlot(key: string): number {
  const buf = Buffer.from(key, "utf8");
  let start = 0;
  let end = buf.length;
  const open = buf.indexOf(0x7b); // {
  if (open >= 0) {
    const close = buf.indexOf(0x7d, open + 1); // }
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc ^= buf[i]! << 8;
    for (let b = 0; b < 8; b++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
