// One set's sender: drains the set's journal into the queue a message at a
// time, packing the next message while the one before it is on the wire,
// lingering a moment while changes stream in (and, after being idle, up to
// lingerMs so trickling changes share a message), running markers'
// on-transmit commands, and sleeping until woken when there is nothing to send.

import { MAX_MESSAGE_BYTES, type Compression } from "../contract/wire.ts";
import { describeHook, hookSucceeded, runHook } from "./hooks.ts";
import { PackedAhead, sendNext, type PackedMarker } from "./sender.ts";
import type { SetContext } from "./set-context.ts";
import { SendsHeldError } from "./owner-hold.ts";
import { ContentFileLostError } from "./journal-content.ts";
import { markerEnvironment } from "./set-operations.ts";
import type { Transport } from "./transport/transport.ts";

const IDLE_WAKE_MS = 1_000;
/** A send this soon after the previous one means changes are streaming in: wait LINGER_MS to gather more. */
const STREAMING_WINDOW_MS = 150;
const LINGER_MS = 50;
/** A backlog this large fills messages by itself. */
const LINGER_BELOW_RECORDS = 200;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * How long a change that arrives at an idle sender waits for more before it
 * is sent (config `lingerMs`). Each message costs about as much as two
 * changes' PUTs (queue requests, an invocation, the applier's reads and its
 * history segment: bench/notes.md), so at 5 changes/s a lone change per
 * message costs 2-3× the floor; 2 s packs ~10 and costs ~1.2×.
 */
export const DEFAULT_LINGER_MS = 2_000;
/** A backlog this large pays for its message: it goes without lingering. */
export const PACKED_ENOUGH_RECORDS = 32;

/**
 * How long the sender waits before packing the next message. A lone change
 * goes at once; while changes stream in (the previous send was moments ago)
 * it waits a little so one message carries many: the target applies a set
 * one message at a time, so its pace is set per message, not per record.
 */
export function lingerBeforeSend(sinceLastSendMs: number, backlogRecords: number): number {
  const streaming = sinceLastSendMs < STREAMING_WINDOW_MS;
  return streaming && backlogRecords > 0 && backlogRecords < LINGER_BELOW_RECORDS ? LINGER_MS : 0;
}

export interface SetSenderOptions {
  /** Wrapped with retries by the caller: a send that throws stops the loop until the next wake-up. */
  readonly transport: Transport;
  readonly compression?: Compression;
  /** Whether the set's applier reads packs compressed as a whole (applier-accepts.ts); @default never */
  readonly wholePacks?: () => boolean;
  /** Once the queue accepted a message holding markers (ONRECEIVE). */
  readonly announceReceived?: (set: string, markers: readonly PackedMarker[]) => Promise<void>;
  /** Before each send (the journal's continuity with the target, checked once). */
  readonly beforeSend: () => Promise<void>;
  /** After each send (a catch-up scan once an overflowed backlog drained; large files that waited). */
  readonly afterSend: () => Promise<void>;
  /** How long changes arriving at an idle sender wait for more before they are sent. @default 0 (at once) */
  readonly lingerMs?: number;
  /** True while the set's sends are held (owner-hold.ts: the target's owner record names another key); the journal keeps them. */
  readonly held?: () => Promise<boolean>;
  /** Why the sends are held, for the error a drain throws then. */
  readonly heldReason?: () => string | undefined;
  /** A journaled content file is gone: its records leave the stream (spool-folder.ts), then the message is packed again. */
  readonly contentLost?: () => Promise<void>;
}

/** Repairs of lost content files in one send before its error is let through: each repair takes every lost one out. */
const CONTENT_REPAIRS = 3;

export class SetSender {
  readonly #context: SetContext;
  readonly #options: SetSenderOptions;
  /** The next message, packed while the one before it is on the wire. */
  readonly #ahead = new PackedAhead();
  /** Markers whose on-transmit command ran (or runs) in this process: a retried or second send waits for that run. */
  readonly #transmitted = new Map<string, Promise<void>>();
  /** The send in flight, which the next waits for. */
  #sending: Promise<unknown> = Promise.resolve();
  #wake: (() => void) | undefined;
  /** Something a user waits on was journaled since the last send: no lingering. */
  #hurried = false;
  #lingering = false;

  constructor(context: SetContext, options: SetSenderOptions) {
    this.#context = context;
    this.#options = options;
  }

  wake(): void {
    this.#wake?.();
  }

  /** Something a user waits on was journaled (a marker, a verification, a resync ...): it goes without lingering. */
  hurry(): void {
    this.#hurried = true;
    this.#wake?.();
  }

  /** True while changes wait for more to share their message. */
  get lingering(): boolean {
    return this.#lingering;
  }

  /** Sends until the journal of this set is empty; throws SendsHeldError while the set's sends are held (nothing is sent to be refused). */
  async drain(): Promise<number> {
    const { journal, spec } = this.#context;
    let total = 0;
    for (;;) {
      const { backlogRecords } = journal.sets.counters(spec.name);
      if (backlogRecords > 0 && (await this.#options.held?.()) === true) {
        throw new SendsHeldError(spec.name, backlogRecords, this.#options.heldReason?.() ?? "the target's owner record names another key than this host's");
      }
      const sent = await this.#sendNext();
      await this.#options.afterSend();
      if (sent.records === 0 && journal.sets.counters(spec.name).backlogRecords === 0) return total;
      total += sent.records;
    }
  }

  async sendLoop(stopped: () => boolean): Promise<void> {
    const { journal, spec, health, log } = this.#context;
    let lastSend = 0;
    let idle = false;
    /** Failed turns in a row; from the second, the error is the set's lastSendError in status (a transport's retries name theirs). */
    let failures = 0;
    while (!stopped()) {
      let sent = 0;
      let hurried = false;
      try {
        if (idle) await this.#lingerAfterIdle(stopped);
        if (stopped()) return;
        const linger = lingerBeforeSend(Date.now() - lastSend, journal.sets.counters(spec.name).backlogRecords);
        if (linger > 0) await sleep(linger);
        lastSend = Date.now();
        hurried = this.#hurried;
        this.#hurried = false;
        // While the disk is full, what is journaled is still sent (it frees its spooled content), unless marking a
        // message sent found no space: sending would then only send it twice (journal-health.ts).
        sent = !health.sending || (await this.#options.held?.()) === true ? 0 : (await this.#sendNext()).records;
        await this.#options.afterSend();
        if (failures > 1) this.#nameSendError(null);
        failures = 0;
      } catch (error) {
        if (stopped()) return;
        failures += 1;
        if (!health.handleSend(error)) {
          log.error("send failed", { set: spec.name, error: String(error) });
          // A failure that repeats would otherwise show in status only as a backlog that grows.
          if (failures > 1) this.#nameSendError(error instanceof Error ? error.message : String(error));
        }
      }
      // What someone waits on is still unsent (a failed send, a full disk): the next try does not linger either.
      if (hurried && sent === 0) this.#hurried = true;
      idle = sent === 0;
      if (sent === 0 && !stopped()) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, IDLE_WAKE_MS);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
      }
    }
  }

  /** Names (or clears) the set's send error in status; a journal that cannot take it is the journal's health's to report. */
  #nameSendError(error: string | null): void {
    const { journal, spec, health, log } = this.#context;
    try {
      journal.sets.recordSendError(spec.name, error);
    } catch (failure) {
      if (!health.handle(failure)) log.error("send error not recorded", { set: spec.name, error: String(failure) });
    }
  }

  /**
   * Changes that arrived while the sender was idle wait up to lingerMs for
   * more, so a trickle shares messages. They go at once when enough are
   * waiting to fill or pay for a message, when something a user waits on is
   * journaled (hurry), and when the agent stops.
   */
  async #lingerAfterIdle(stopped: () => boolean): Promise<void> {
    const { journal, spec } = this.#context;
    const ms = this.#options.lingerMs ?? 0;
    const done = () => {
      const { backlogRecords, backlogBytes } = journal.sets.counters(spec.name);
      return stopped() || this.#hurried || backlogRecords === 0 || backlogRecords >= PACKED_ENOUGH_RECORDS || backlogBytes >= MAX_MESSAGE_BYTES;
    };
    if (ms <= 0 || done()) return;
    this.#lingering = true;
    await new Promise<void>((resolve) => {
      const end = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(end, ms);
      this.#wake = () => {
        if (done()) end();
      };
    });
    this.#wake = undefined;
    this.#lingering = false;
  }

  /** Sends one at a time: a command's drain beside the send loop sent the same records (and marker) twice. */
  #sendNext(): ReturnType<typeof sendNext> {
    const turn = this.#sending.then(() => this.#sendOnce());
    this.#sending = turn.catch(() => undefined);
    return turn;
  }

  async #sendOnce() {
    await this.#options.beforeSend();
    const { journal, spec, log } = this.#context;
    const { transport, compression, announceReceived, contentLost } = this.#options;
    for (let repairs = 0; ; repairs++) {
      try {
        return await sendNext(journal, transport, spec.name, {
          ...(compression ? { compression } : {}),
          wholePacks: this.#options.wholePacks?.() ?? false,
          ahead: this.#ahead,
          beforeMarkers: (set, markers) => this.#beforeTransmit(markers),
          ...(announceReceived ? { afterMarkers: announceReceived } : {}),
          onSkipped: (set, skipped, reason) => log.error("not replicated: the target refused a record for good; it keeps the last good version", { set, seq: skipped.seq, record: skipped.what, reason }),
        });
      } catch (error) {
        if (!(error instanceof ContentFileLostError) || !contentLost || repairs >= CONTENT_REPAIRS) throw error;
        this.#ahead.drop();
        await contentLost();
      }
    }
  }

  async #beforeTransmit(markers: readonly PackedMarker[]): Promise<void> {
    for (const marker of markers) {
      if (!marker.onTransmit) continue;
      // A second send of the set (an in-process command's drain beside the send loop) waits for the same run: the
      // marker goes out after its command ended, and the command runs once.
      let run = this.#transmitted.get(marker.id);
      if (!run) {
        run = this.#onTransmit(marker, marker.onTransmit);
        this.#transmitted.set(marker.id, run);
      }
      await run;
    }
  }

  async #onTransmit(marker: PackedMarker, command: string): Promise<void> {
    const { spec, log } = this.#context;
    const result = await runHook(command, { env: markerEnvironment(spec.name, marker.id, marker.seq, marker.fields) });
    // The marker goes out either way: a hook never holds up replication.
    if (hookSucceeded(result)) log.info("on-transmit command done", { set: spec.name, task: marker.id, ms: result.ms });
    else log.warn(describeHook("on-transmit", result), { set: spec.name, task: marker.id });
  }
}
