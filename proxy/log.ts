/**
 * Structured logs: one JSON object per line on stdout (pino). Session loggers are children that
 * carry `tenant` and `database` on every line they write.
 */
import pino, { type Logger } from "pino";

export function createLogger(proxyId: string, level = process.env.TENANTFLEET_LOG_LEVEL ?? "info"): Logger {
  return pino({ level, base: { proxy: proxyId }, timestamp: pino.stdTimeFunctions.isoTime });
}
