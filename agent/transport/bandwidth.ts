// Bandwidth limit as a transport wrapper (like retry.ts): a token bucket caps
// the bytes per second this host sends, by time window when a schedule says
// so. The journal absorbs what the link cannot carry.

import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { strictObject } from "../strict-schema.ts";
import type { MessageAttributes, StagedPayload, Transport } from "./transport.ts";

const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
type Day = (typeof DAYS)[number];
const HHMM = /^([01]\d|2[0-3]):[0-5]\d$/;

export const BandwidthWindowSchema = strictObject({
  days: z.array(z.enum(DAYS)).min(1).optional(),
  from: z.string().regex(HHMM, "from must be HH:MM (00:00 to 23:59)"),
  to: z.string().regex(HHMM, "to must be HH:MM (00:00 to 23:59)"),
  /** 0: unlimited in this window. */
  bytesPerSecond: z.number().int().min(0),
});

/** The config's "bandwidth" section. */
export const BandwidthSchema = strictObject({
  /** Outside every window (or without a schedule); 0 or absent: unlimited. */
  bytesPerSecond: z.number().int().min(0).optional(),
  schedule: z.array(BandwidthWindowSchema).optional(),
});

export type BandwidthWindow = z.infer<typeof BandwidthWindowSchema>;
export type Bandwidth = z.infer<typeof BandwidthSchema>;

const minutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

function inWindow(window: BandwidthWindow, date: Date): boolean {
  const now = date.getHours() * 60 + date.getMinutes();
  const from = minutes(window.from);
  const to = minutes(window.to);
  // A window past midnight (22:00-06:00) belongs to the day it starts on.
  const wraps = to <= from;
  const inside = wraps ? now >= from || now < to : now >= from && now < to;
  if (!inside || !window.days) return inside;
  const startDay = wraps && now < to ? (date.getDay() + 6) % 7 : date.getDay();
  return window.days.includes(DAYS[startDay] as Day);
}

/** The cap in force at a local time, in bytes per second; 0 means unlimited. */
export function rateAt(bandwidth: Bandwidth, date: Date): number {
  const window = bandwidth.schedule?.find((w) => inWindow(w, date));
  return window ? window.bytesPerSecond : (bandwidth.bytesPerSecond ?? 0);
}

export interface RateLimitOptions {
  readonly now?: () => Date;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Aborting rejects a call waiting for bandwidth; the records stay journaled. */
  readonly signal?: AbortSignal;
  /** Told when a set's message starts waiting for the budget (a large upload before it charged its whole cost), and when it goes. */
  readonly onSendWait?: (set: string, waiting: boolean) => void;
}

export class RateLimitedTransport implements Transport {
  readonly #inner: Transport;
  readonly #onSendWait: ((set: string, waiting: boolean) => void) | undefined;
  readonly #bandwidth: Bandwidth;
  readonly #now: () => Date;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #signal: AbortSignal | undefined;
  /** Bytes that may go now; negative after a call larger than the bucket (its debt). */
  #tokens = 0;
  #refilledAt: number;
  /** Calls wait their turn in arrival order, so a large one is not starved. */
  #queue: Promise<unknown> = Promise.resolve();
  /** A call's turn sleeps for the budget: the calls queued behind it wait for it too. */
  #sleeping = false;
  /** How to tell each call that has not had its turn yet that it waits (once the turn ahead of it sleeps). */
  readonly #queued = new Set<(waiting: boolean) => void>();

  constructor(inner: Transport, bandwidth: Bandwidth, options: RateLimitOptions = {}) {
    this.#inner = inner;
    this.#bandwidth = Object.freeze({ ...bandwidth });
    this.#now = options.now ?? (() => new Date());
    this.#sleep = options.sleep ?? ((ms, signal) => sleep(ms, undefined, signal ? { signal } : {}));
    this.#signal = options.signal;
    this.#onSendWait = options.onSendWait;
    this.#refilledAt = this.#now().getTime();
    this.#tokens = rateAt(this.#bandwidth, this.#now());
  }

  stage(payload: StagedPayload): Promise<void> {
    return this.#paced(payload.size, () => this.#inner.stage(payload), payload.pacing);
  }

  send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    const onSendWait = this.#onSendWait;
    return this.#paced(Buffer.byteLength(body), () => this.#inner.send(set, deduplicationId, body, attributes), onSendWait ? (waiting) => onSendWait(set, waiting) : undefined);
  }

  #refill(rate: number): void {
    const now = this.#now().getTime();
    // One second's worth is the most that may go in a burst.
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#refilledAt) / 1000) * rate);
    this.#refilledAt = now;
  }

  /** Waits for the call's turn and its budget, then calls; `pacing` is told while it waits (status names it). */
  async #paced(cost: number, call: () => Promise<void>, pacing?: (waiting: boolean) => void): Promise<void> {
    let told = false;
    const tell = (waiting: boolean) => {
      if (waiting === told) return;
      told = waiting;
      try {
        pacing?.(waiting);
      } catch {
        // Status only: the call goes on.
      }
    };
    // Behind a call that sleeps for the budget, this one waits for it too; behind one that only takes its turn, not.
    if (this.#sleeping) tell(true);
    this.#queued.add(tell);
    const turn = this.#queue.then(async () => {
      this.#queued.delete(tell);
      for (;;) {
        this.#signal?.throwIfAborted();
        const rate = rateAt(this.#bandwidth, this.#now());
        if (rate === 0) return;
        this.#refill(rate);
        if (this.#tokens >= 0) {
          this.#tokens -= cost;
          return;
        }
        tell(true);
        for (const behind of this.#queued) behind(true);
        this.#sleeping = true;
        try {
          await this.#sleep(Math.ceil((-this.#tokens / rate) * 1000), this.#signal);
        } finally {
          this.#sleeping = false;
        }
      }
    });
    this.#queue = turn.catch(() => undefined);
    try {
      await turn;
    } finally {
      this.#queued.delete(tell);
      tell(false);
    }
    await call();
  }
}
