// Where task events go (DESIGN 7): the stack's EventBridge bus, or the local
// cloud's event log. Apart from the actions so that the agent, which only
// announces received markers, does not load the actions' clients.

import { appendFile } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import type { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { EVENT_SOURCE, type EventSink } from "./actions.ts";

/** Events on an EventBridge bus. */
export class EventBridgeSink implements EventSink {
  readonly #client: EventBridgeClient;
  readonly #bus: string;

  constructor(client: EventBridgeClient, bus: string) {
    this.#client = client;
    this.#bus = bus;
  }

  async put(detailType: string, detail: Record<string, unknown>, signal?: AbortSignal): Promise<string> {
    // Loaded with the client that sends it, not with this module: the agent imports the file sink too, and starts
    // ~20 ms sooner without EventBridge's module when no bus is configured.
    const { PutEventsCommand } = await import("@aws-sdk/client-eventbridge");
    const out = await this.#client.send(
      new PutEventsCommand({ Entries: [{ EventBusName: this.#bus, Source: EVENT_SOURCE, DetailType: detailType, Detail: JSON.stringify(detail) }] }),
      signal ? { abortSignal: signal } : {},
    );
    const entry = out.Entries?.[0];
    if ((out.FailedEntryCount ?? 0) > 0 || !entry?.EventId) {
      throw new Error(`EventBridge refused the event: ${entry?.ErrorCode ?? "unknown"} ${entry?.ErrorMessage ?? ""}`.trim());
    }
    return entry.EventId;
  }
}

/** The local cloud's event bus: one JSON line per event in a file. */
export class FileEventSink implements EventSink {
  readonly #file: string;
  constructor(file: string) {
    this.#file = file;
  }
  async put(detailType: string, detail: Record<string, unknown>): Promise<string> {
    const id = randomUUID();
    const event = { id, time: new Date().toISOString(), source: EVENT_SOURCE, "detail-type": detailType, detail };
    await appendFile(this.#file, `${JSON.stringify(event)}\n`);
    return id;
  }
}
