export type { RenewOutcome } from "./outcome.js";
export { renewerFor } from "./registry.js";
export type { Renewal } from "./renewal.js";
export {
  RENEWER_DEFAULTS,
  Renewer,
  type RenewerOptions,
  type RenewerStats,
  type RenewStore,
} from "./renewer.js";
