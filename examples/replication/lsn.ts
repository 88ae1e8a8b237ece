/** PostgreSQL log sequence numbers (`16/B374D848`) as bigints, and back. */

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `X/Y` (hex) into a 64-bit position. Throws on anything else. */
export function parseLsn(s: string): bigint {
  const m = LSN.exec(s);
  if (!m) throw new Error(`replication: not an LSN: ${JSON.stringify(s)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Formats a 64-bit position as `X/Y` (upper-case hex, as PostgreSQL prints it). */
export function formatLsn(n: bigint): string {
  if (n < 0n) throw new Error(`replication: negative LSN ${n}`);
  return `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
}
