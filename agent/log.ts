// The agent's structured logger, on pino: one JSON object per line when asked
// (--json-logs), and the same events as readable lines on a terminal. Lines
// are written synchronously, so nothing is lost when the process exits.

import { pino, stdSerializers, stdTimeFunctions, type Logger as PinoLogger } from "pino";
import { escapeControl } from "./format.ts";

export type Level = "debug" | "info" | "warn" | "error";
export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

/** A pino JSON line as the human format reads it back. */
interface Line {
  time: string;
  level: string;
  msg: string;
  [field: string]: unknown;
}

/**
 * `2026-11-24T10:00:00.000Z info  set scanned set=docs entries=3`: strings bare, the rest as JSON. Control
 * characters are shown escaped, so a file named "x\n2026-... error ..." cannot forge a line of the log.
 */
export function humanLine(json: string): string {
  const { time, level, msg, ...fields } = JSON.parse(json) as Line;
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === "string" ? escapeControl(v) : JSON.stringify(v)}`)
    .join(" ");
  return `${time} ${level.padEnd(5)} ${escapeControl(msg)}${extra ? ` ${extra}` : ""}`;
}

export function createLogger(options: { json?: boolean; level?: Level; write?: (line: string) => void } = {}): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const destination = {
    write(chunk: string) {
      const line = chunk.endsWith("\n") ? chunk.slice(0, -1) : chunk;
      write(options.json ? line : humanLine(line));
    },
  };
  const logger: PinoLogger = pino(
    {
      level: options.level ?? "info",
      base: undefined,
      messageKey: "msg",
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // An Error passed as a field keeps its message and stack.
      serializers: { error: stdSerializers.err, err: stdSerializers.err },
    },
    destination,
  );
  return {
    debug: (msg, fields) => logger.debug(fields ?? {}, msg),
    info: (msg, fields) => logger.info(fields ?? {}, msg),
    warn: (msg, fields) => logger.warn(fields ?? {}, msg),
    error: (msg, fields) => logger.error(fields ?? {}, msg),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** The applier logs one JSON line per event (CloudWatch Logs in Lambda); in the local cloud they go through this logger. */
export function logJsonLine(log: Logger, line: string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    log.info(line);
    return;
  }
  const fields: Fields = typeof parsed === "object" && parsed !== null ? Object.fromEntries(Object.entries(parsed)) : {};
  const { level, msg, ...rest } = fields;
  const text = typeof msg === "string" ? msg : line;
  if (level === "error") log.error(text, rest);
  else if (level === "warn") log.warn(text, rest);
  else if (level === "debug") log.debug(text, rest);
  else log.info(text, rest);
}
