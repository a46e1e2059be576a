// Kernel event-queue overflow, detected from Node. Every fs.watch of a
// process shares libuv's one inotify instance, so one kernel queue of at most
// fs.inotify.max_queued_events events. When a tree changes faster than the
// agent reads (its event loop busy), the queue fills, later events are lost
// and the kernel queues IN_Q_OVERFLOW, which libuv drops without a word (it
// finds no watch for wd -1). What can be seen: libuv reads the queue until it
// is empty and runs the callbacks of everything it read before the event loop
// moves on, so after an overflow one turn of the loop delivers at least the
// queue's size in events (measured: 40,000 files made while the loop was
// blocked arrive as one burst of exactly 16,384, the default limit). A burst
// that reaches SUSPECT_SHARE of the limit means the queue was full, or nearly:
// changes may be lost, and a scan of each watched set catches up. It may also
// fire with nothing lost (a burst read while the kernel kept adding); that
// costs a scan. It cannot see events the kernel queued for a watch that was
// removed meanwhile (libuv drops those too), hence the margin below the limit.

import { readFileSync } from "node:fs";
import { captureFailed } from "./held-files.ts";
import type { Journal } from "./journal.ts";

/** A burst of this share of the queue's limit is taken as a possible overflow (see the top of this file). */
export const SUSPECT_SHARE = 0.9;
export const QUEUE_LIMIT_FILE = "/proc/sys/fs/inotify/max_queued_events";

/** The kernel's per-instance event queue limit, or undefined where there is none to read (not Linux). */
export function readQueueLimit(file = QUEUE_LIMIT_FILE): number | undefined {
  try {
    const limit = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(limit) && limit > 0 ? limit : undefined;
  } catch {
    return undefined;
  }
}

/** The watcher's events may have been lost: the kernel's queue was full. */
export class WatchQueueOverflowError extends Error {
  override name = "WatchQueueOverflowError";
  readonly burst: number;
  readonly limit: number;
  constructor(burst: number, limit: number) {
    super(
      `the watcher may have lost changes: ${burst} events arrived at once, as many as the kernel's event queue holds (fs.inotify.max_queued_events=${limit}; Node does not report an overflow); raise it (e.g. sysctl fs.inotify.max_queued_events=${limit * 4}) if this recurs`,
    );
    this.burst = burst;
    this.limit = limit;
  }
}

export interface EventQueueOptions {
  /** The kernel queue's limit; undefined turns the check off. @default read from /proc/sys/fs/inotify/max_queued_events */
  readonly limit?: number | undefined;
  /** Runs `end` after the current turn of the event loop. @default setImmediate */
  readonly afterTurn?: (end: () => void) => void;
}

/** Counts the events one turn of the event loop delivers; tells its listeners of a burst that may mean an overflow. */
export class EventQueueWatch {
  readonly #threshold: number | undefined;
  readonly #limit: number;
  readonly #afterTurn: (end: () => void) => void;
  readonly #listeners = new Set<(error: WatchQueueOverflowError) => void>();
  #burst = 0;

  constructor(options: EventQueueOptions = {}) {
    const limit = "limit" in options ? options.limit : readQueueLimit();
    this.#limit = limit ?? 0;
    this.#threshold = limit === undefined ? undefined : Math.max(1, Math.floor(limit * SUSPECT_SHARE));
    this.#afterTurn = options.afterTurn ?? ((end) => setImmediate(end));
  }

  /** One event arrived from the kernel (any watch of this process). */
  event(): void {
    if (this.#threshold === undefined) return;
    if (this.#burst++ > 0) return;
    this.#afterTurn(() => {
      const burst = this.#burst;
      this.#burst = 0;
      if (this.#threshold === undefined || burst < this.#threshold) return;
      const error = new WatchQueueOverflowError(burst, this.#limit);
      for (const listener of this.#listeners) listener(error);
    });
  }

  /** Hears of each possible overflow until the returned function is called. */
  onOverflow(listener: (error: WatchQueueOverflowError) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** The process's one queue: every fs.watch of the agent reports its events here. */
export const processEventQueue = new EventQueueWatch();

/** Names a possible overflow like a failed capture: status says so until a scan of the whole set (the catch-up) succeeds. */
export function namePossibleLoss(journal: Journal, set: string, error: WatchQueueOverflowError): void {
  try {
    captureFailed(journal, set, Date.now, error);
  } catch {
    // The journal cannot record it (status names a journal it cannot use); the catch-up scan runs all the same.
  }
}
