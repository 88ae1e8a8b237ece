export {
  type HealthHandler,
  type HealthHandlerOptions,
  type HealthServer,
  healthHandler,
  type ServeHealthOptions,
  serveHealth,
} from "./health.js";
export { createMetrics, type MetricsOptions, type TenureMetrics } from "./metrics.js";
