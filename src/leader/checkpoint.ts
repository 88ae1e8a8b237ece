import { FencedError } from "../errors.js";
import type { LeaderStore } from "../store/types.js";
import type { Term } from "../term.js";

/** A checkpoint stored under a lease and written only with the current fencing token. */
export interface Checkpoint {
  /** The last saved value, or null when none was ever saved. */
  load(): Promise<string | null>;
  /**
   * Saves `value` if `term` still holds the lease in the store. A stale term
   * cannot move the checkpoint: this throws FencedError instead.
   */
  save(value: string): Promise<void>;
}

/** Store key of a named checkpoint. */
export function checkpointKey(name: string): string {
  return `checkpoint:${name}`;
}

/**
 * A fenced checkpoint `name` of `term`'s lease, kept in `store` with
 * `putFenced` / `getFenced` (so it lives wherever the lease lives).
 */
export function fencedCheckpoint(store: LeaderStore, term: Term, name: string): Checkpoint {
  const key = checkpointKey(name);
  return {
    async load() {
      const v = await store.getFenced(term.name, key);
      return v ? v.value : null;
    },
    async save(value: string) {
      if (typeof value !== "string") {
        throw new TypeError(
          `tenure checkpoint "${name}": value must be a string (serialise it first)`,
        );
      }
      const r = await store.putFenced(
        { name: term.name, holder: term.holder, token: term.token },
        key,
        value,
      );
      if (r.ok) return;
      const cur = await store.read(term.name).catch(() => null);
      throw new FencedError(term.name, term.token, cur ? cur.token : null);
    },
  };
}
