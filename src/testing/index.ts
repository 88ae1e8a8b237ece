/** Test helpers for users of Tenure: a manual clock and the in-memory store. */

export { MemoryStore } from "../stores/memory/index.js";
export { FakeClock } from "./fake-clock.js";
