// While a long poll waits, fauxqs 2.x runs its queue's timers (visibility
// ends, delays over) on a 20 ms interval: an idle local cloud, whose poller
// always has a receive waiting, woke ~50 times a second per waiting queue
// (about 1,000 epoll wake-ups in 10 s, 0.9-1.1 % of a core doing nothing;
// about 100 and 0.4-0.7 % since: bench/notes.md). Its receive
// needs the timers only when a message's visibility or delay ends, so the
// waiting queue now sleeps until the earliest such moment (or not at all when
// none is pending), armed again whenever one may have moved: a message sent,
// received, or its visibility changed.

import { fauxqsPrototype } from "./fauxqs-internals.ts";

interface Deadlined {
  readonly visibilityDeadline: number;
}

interface Delayed {
  readonly delayUntil?: number;
}

/** fauxqs's SqsQueue (dist/sqs/sqsStore.js), as far as its poll timer goes. */
interface PollingQueue {
  readonly pollWaiters: readonly unknown[];
  pollTimer: NodeJS.Timeout | undefined;
  readonly inflightMessages: Map<string, Deadlined>;
  readonly delayedMessages: readonly Delayed[];
  readonly fifoDelayed: Map<string, readonly Delayed[]>;
  processTimers(): void;
  startPollTimerIfNeeded(): void;
  /** fauxqs's own, kept: it clears the timer once no receive waits. */
  stopPollTimerIfEmpty(): void;
  enqueue(message: unknown): void;
  dequeue(...args: unknown[]): unknown;
  changeVisibility(receiptHandle: string, timeoutSeconds: number): void;
}

/** When the queue's timers next have something to do (a visibility or a delay ends), or undefined when never. */
function nextDue(queue: PollingQueue): number | undefined {
  let due = Number.POSITIVE_INFINITY;
  for (const entry of queue.inflightMessages.values()) due = Math.min(due, entry.visibilityDeadline);
  for (const message of queue.delayedMessages) if (message.delayUntil !== undefined) due = Math.min(due, message.delayUntil);
  for (const messages of queue.fifoDelayed.values()) for (const message of messages) if (message.delayUntil !== undefined) due = Math.min(due, message.delayUntil);
  return Number.isFinite(due) ? due : undefined;
}

/** While a receive waits: one timer, at the next due moment, that runs the queue's timers and arms the next. */
function arm(queue: PollingQueue): void {
  // fauxqs clears it with clearInterval (stopPollTimerIfEmpty, cancelWaiters), which clears a timeout too.
  clearTimeout(queue.pollTimer);
  queue.pollTimer = undefined;
  if (queue.pollWaiters.length === 0) return;
  const due = nextDue(queue);
  if (due === undefined) return;
  queue.pollTimer = setTimeout(
    () => {
      queue.pollTimer = undefined;
      // Wakes the waiters when a message came back or its delay ended (they receive it themselves).
      queue.processTimers();
      arm(queue);
    },
    Math.max(0, due - Date.now()),
  );
}

let patched = false;

/** Patches fauxqs's queue class once per process, before an emulator serves a request. */
export async function pollOnlyWhenDue(): Promise<void> {
  if (patched) return;
  const prototype = await fauxqsPrototype<PollingQueue>("./sqs/sqsStore.js", "SqsQueue", ["startPollTimerIfNeeded", "stopPollTimerIfEmpty", "processTimers", "enqueue", "dequeue", "changeVisibility"]);
  const { enqueue, dequeue, changeVisibility } = prototype;
  prototype.startPollTimerIfNeeded = function (this: PollingQueue) {
    arm(this);
  };
  // Each may move the next due moment while a receive waits (a delayed message, one received, a visibility changed).
  prototype.enqueue = function (this: PollingQueue, message: unknown) {
    enqueue.call(this, message);
    if (this.pollWaiters.length > 0) arm(this);
  };
  prototype.dequeue = function (this: PollingQueue, ...args: unknown[]) {
    const received = dequeue.apply(this, args);
    if (this.pollWaiters.length > 0) arm(this);
    return received;
  };
  prototype.changeVisibility = function (this: PollingQueue, receiptHandle: string, timeoutSeconds: number) {
    changeVisibility.call(this, receiptHandle, timeoutSeconds);
    if (this.pollWaiters.length > 0) arm(this);
  };
  patched = true;
}
