export {
  type HealthHandler,
  type HealthHandlerOptions,
  type HealthServer,
  healthHandler,
  type ServeHealthOptions,
  serveHealth,
} from "./health.js";
export { createMetrics, type MetricsOptions, type TenureMetrics } from "./metrics.js";
export {
  createOtelMetrics,
  type MeterLike,
  type OtelMetrics,
  type OtelMetricsOptions,
} from "./otel.js";
