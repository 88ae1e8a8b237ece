import type { ElectorHealth, ElectorHealthJson } from "./types.js";

/**
 * Gives a health snapshot a non-enumerable `toJSON` (tokens as decimal
 * strings), so `JSON.stringify(elector.health())` works while leading and a
 * spread copy (`{ ...health }`) stays a plain object.
 */
export function withHealthJson(h: Omit<ElectorHealth, "toJSON">): ElectorHealth {
  Object.defineProperty(h, "toJSON", {
    enumerable: false,
    value: (): ElectorHealthJson => {
      const { leader } = h;
      return {
        ...h,
        token: h.token === null ? null : h.token.toString(),
        leader: leader ? { ...leader, token: leader.token.toString() } : null,
      };
    },
  });
  return h as ElectorHealth;
}
