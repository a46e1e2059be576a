// Where the bytes of the agent's messages go (issue 17's append scenario):
// counted from the SendMessage request bodies the counting proxy kept, so a
// ratio of bytes on the wire comes with the messages and records behind it.

import type { IncomingMessage } from "node:http";
import { formatBytes } from "../agent/format.ts";

const SEND_MESSAGE = "AmazonSQS.SendMessage";

export interface WireBreakdown {
  readonly messages: number;
  readonly records: number;
  /** SendMessage request bodies, whole. */
  readonly requestBytes: number;
  /** The message bodies (the wire format's JSON) within them. */
  readonly bodyBytes: number;
  /** The records' JSON within the bodies. */
  readonly recordBytes: number;
  /** The inline content's encoded data within the records. */
  readonly contentBytes: number;
}

/** True for the requests whose bodies the breakdown reads (SQS bodies are small; staged objects are not kept). */
export function isSendMessage(req: IncomingMessage): boolean {
  return req.headers["x-amz-target"] === SEND_MESSAGE;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** Adds the SendMessage requests' bodies up. */
export function wireBreakdown(requests: readonly Buffer[]): WireBreakdown {
  let records = 0;
  let bodyBytes = 0;
  let recordBytes = 0;
  let contentBytes = 0;
  let requestBytes = 0;
  for (const request of requests) {
    requestBytes += request.length;
    const sent: unknown = JSON.parse(request.toString("utf8"));
    const body = isObject(sent) ? sent.MessageBody : undefined;
    if (typeof body !== "string") continue;
    bodyBytes += Buffer.byteLength(body);
    const message: unknown = JSON.parse(body);
    const list = isObject(message) && Array.isArray(message.records) ? (message.records as unknown[]) : [];
    records += list.length;
    for (const record of list) {
      recordBytes += Buffer.byteLength(JSON.stringify(record));
      const content = isObject(record) ? record.content : undefined;
      if (isObject(content) && typeof content.data === "string") contentBytes += content.data.length;
    }
  }
  return { messages: requests.length, records, requestBytes, bodyBytes, recordBytes, contentBytes };
}

/** One line for a result row. */
export function describeBreakdown(b: WireBreakdown): string {
  const perRecord = b.records > 0 ? Math.round(b.recordBytes / b.records) : 0;
  const fixed = b.records > 0 ? Math.round((b.recordBytes - b.contentBytes) / b.records) : 0;
  return `${b.messages} messages, ${b.records} records (${(b.records / Math.max(1, b.messages)).toFixed(1)} a message); ${perRecord} bytes a record, ${fixed} of them not content; SendMessage bodies ${formatBytes(b.requestBytes)}, of them records ${formatBytes(b.recordBytes)}`;
}
