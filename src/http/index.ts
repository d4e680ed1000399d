/** `latchkey/http`: metrics, health probes, logs and the web console over a store (embedded or served). */
export { HttpServer, type HttpOptions, LOOPBACK_READER, startHttp } from './server.js';
export { Metrics } from './metrics.js';
export { LOG_LEVELS, type LogLevel, type Logger, createLogger, logEngineEvents, logRecovery } from './log.js';
