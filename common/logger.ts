import pino from 'pino';

/** Structured JSON logs, one line per event, for every process of the service. */
export const logger = pino({
  level: process.env.LOG_LEVEL ?? 'info',
  base: { service: 'runboat-temporal' },
  timestamp: pino.stdTimeFunctions.isoTime,
});
