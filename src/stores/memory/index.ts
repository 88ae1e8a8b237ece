/**
 * The in-process memory store (`memory:`): the reference every other backend
 * is held to. The class is in store.ts.
 */
import { MemoryStore, type MemoryStoreOptions } from "./store.js";

export { MemoryStore, type MemoryStoreOptions } from "./store.js";

/** Opens a memory store (`memory:`). */
export function openMemoryStore(opts: MemoryStoreOptions = {}): MemoryStore {
  return new MemoryStore(opts);
}
