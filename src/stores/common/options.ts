/** Option parsing shared by the stores' URL openers. */
import { checkInt } from "../../limits.js";

/**
 * An integer option from `min` to `max`, given as a number or, from a URL
 * query, as a string of digits. Otherwise a ConfigError naming `field`.
 */
export function intOption(field: string, v: unknown, min: number, max: number): number {
  return checkInt(field, typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v, min, max);
}
