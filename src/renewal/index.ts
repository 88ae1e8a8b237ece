export {
  type AcquireAnswer,
  Acquirer,
  type AcquirerStats,
  type AcquireStore,
  acquirerFor,
} from "./acquirer.js";
export type { RenewOutcome } from "./outcome.js";
export { renewerFor } from "./registry.js";
export {
  MAX_RELEASES_IN_FLIGHT,
  Releaser,
  type ReleaserStats,
  type ReleaseStore,
  releaserFor,
} from "./releaser.js";
export type { Renewal } from "./renewal.js";
export {
  RENEWER_DEFAULTS,
  Renewer,
  type RenewerOptions,
  type RenewerStats,
  type RenewStore,
} from "./renewer.js";
