/** Plumbing every store shares: errors, watcher sets, option parsing. */
export { closedError, schemaError } from "./errors.js";
export { intOption } from "./options.js";
export { callWatcher, type WatchCallback, WatcherSet } from "./watchers.js";
