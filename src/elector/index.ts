export { createElector, Elector } from "./elector.js";
export { defaultHolderId, ELECTOR_DEFAULTS, type ElectorOptions } from "./options.js";
export type * from "./types.js";
export { type WithLeaseOptions, withLease } from "./with-lease.js";
