export { type BackoffOptions, backoffDelay } from "./backoff.js";
export { type Clock, systemClock } from "./clock.js";
export {
  createElector,
  defaultHolderId,
  ELECTOR_DEFAULTS,
  Elector,
  type ElectorOptions,
  type WithLeaseOptions,
  withLease,
} from "./elector/index.js";
export type {
  Demotion,
  ElectorEvents,
  ElectorHealth,
  ElectorHealthJson,
  ElectorState,
  ElectorStats,
  LeaderInfo,
  Term,
} from "./elector/types.js";
export * from "./errors.js";
export type { Disposable } from "./events.js";
export * from "./group/index.js";
export * from "./http/index.js";
export * from "./leader/index.js";
export {
  createStreamLogger,
  detectLoggerShape,
  type LogFields,
  type Logger,
  type LoggerLike,
  type LoggerShape,
  type LogLevel,
  noopLogger,
  toLogger,
} from "./logger.js";
export {
  type DisposableLeaseStore,
  type OpenStoreInput,
  type OpenStoreOptions,
  openStore,
  STORE_SCHEMES,
} from "./open.js";
export {
  type AcquireAnswer,
  Acquirer,
  type AcquirerStats,
  type AcquireStore,
  acquirerFor,
  RENEWER_DEFAULTS,
  Releaser,
  type ReleaserStats,
  type ReleaseStore,
  type Renewal,
  Renewer,
  type RenewerOptions,
  type RenewerStats,
  type RenewOutcome,
  releaserFor,
  renewerFor,
} from "./renewal/index.js";
export { redactUrl } from "./store/classify.js";
export type {
  AcquireItem,
  AcquireResult,
  ElectorStore,
  FencedPutResult,
  FencedValue,
  FencedValues,
  InvalidLease,
  LeaderStore,
  LeaseAdmin,
  LeaseCore,
  LeaseEvent,
  LeaseInfo,
  LeaseRef,
  LeaseStore,
  ListOptions,
  RenewItem,
  RenewResult,
  Unwatch,
} from "./store/types.js";
export { LEASE_NAME_PATTERN } from "./store/validate.js";
export { MemoryStore } from "./stores/memory/index.js";
