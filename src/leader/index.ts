export { type Checkpoint, checkpointKey, fencedCheckpoint } from "./checkpoint.js";
export type { LeaderContext, LeaderHooks } from "./hooks.js";
export {
  type ExitStrategy,
  type LogStrategy,
  RECOVERY_DEFAULTS,
  type ReconnectStrategy,
  type RecoveryInput,
  type RecoveryStrategy,
  resolveRecovery,
  strategyFromEnv,
} from "./recovery.js";
export {
  SERVICE_DEFAULTS,
  type ServiceDefinition,
  type ServiceState,
  type ServiceStatus,
  type StartedService,
  type StartRetryOptions,
} from "./service.js";
export type { StreamContext, StreamDefinition, StreamState, StreamStatus } from "./stream.js";
export {
  type CronOptions,
  type EveryOptions,
  TICK_DEFAULTS,
  type TickFn,
  type TickInfo,
  type TickOptions,
  type TickStats,
  tickClaimKey,
} from "./tick.js";
export { LeaderWork, type LeaderWorkStats } from "./work.js";
