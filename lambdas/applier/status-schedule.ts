// When the applier writes a set's status object. The status is the
// checkpoint that makes a redelivered message change nothing, and what
// `tidemark status` and `task --wait` read; with history on, each message's
// segment already carries the checkpoint durably (store/status-checkpoint.ts),
// so after a message that only moved the counters the status write may wait:
// up to STATUS_WRITE_INTERVAL_MS or STATUS_MAX_DEFERRED_MESSAGES messages per
// set, and at once whenever anything else in the status changed (state, reason, markers, rejections, generation, snapshots,
// the history's checkpoint and retention). It also remembers where each set
// stood after this applier's last message, so reading the status again does
// not fold segments it wrote itself.

import type { SetStatus } from "../../contract/layout.ts";

/**
 * The least time between two status writes of a set that only move its
 * counters. A trickle packed by the agent's linger (a message every ~2 s)
 * then writes the status one message in five instead of after every one
 * (bench/notes.md, "Cost at the floor, packed").
 */
export const STATUS_WRITE_INTERVAL_MS = 10_000;
/**
 * Status writes that may wait in a row (one per batch of a set's messages,
 * or per message outside a batch): what a reader of the status folds (a HEAD
 * per segment), and a cold applier reads again for the folder writes they
 * hold, stays this short under a stream of messages.
 */
export const STATUS_MAX_DEFERRED_MESSAGES = 8;

/** The status without what every applied message moves (and its segment carries): equal projections differ only in progress. */
export function settledFields(status: SetStatus): string {
  const { lastSeq: _seq, appliedRecords: _records, appliedBytes: _bytes, appliedAt: _appliedAt, updatedAt: _updated, history, ...rest } = status;
  if (!history) return JSON.stringify(rest);
  const { segment: _segment, at: _at, ...cursor } = history;
  return JSON.stringify({ ...rest, history: cursor });
}

/** The settled fields of each status object as it was last written: what the stored status holds of them (batch-memory.ts). */
const settledWritten = new WeakMap<SetStatus, string>();

/** The settled fields the store holds since this status object was last written; undefined when it was not written. */
export function settledWhenWritten(status: SetStatus): string | undefined {
  return settledWritten.get(status);
}

interface Written {
  /** When (ms, this applier's clock). */
  readonly at: number;
  /** The text written: the stored object is still this applier's while it reads the same. */
  readonly text: string;
  /** The set as this applier left it: that write, or a message applied after it whose status write waited. */
  latest: SetStatus;
  /** Messages applied since that write whose status write waited. */
  deferred: number;
}

export class StatusSchedule {
  /** This applier's last status write of each set. */
  readonly #written = new Map<string, Written>();

  /** A status write of the set reached the store at `at` with `text`. */
  wrote(status: SetStatus, text: string, at: number): void {
    this.#written.set(status.set, { at, text, latest: structuredClone(status), deferred: 0 });
    settledWritten.set(status, settledFields(status));
  }

  /** A message was applied and its status write waited: the next read starts from here. */
  deferred(status: SetStatus): void {
    const written = this.#written.get(status.set);
    if (!written) return;
    written.latest = structuredClone(status);
    written.deferred += 1;
  }

  /**
   * Where the set stood after this applier's last message, when the stored
   * status object (`storedText`) is still the one this applier wrote: no other
   * writer changed it since, so only segments after `latest` can be new (the
   * caller folds them). Undefined otherwise.
   */
  known(set: string, storedText: string | undefined): SetStatus | undefined {
    const written = this.#written.get(set);
    return written && written.text === storedText ? structuredClone(written.latest) : undefined;
  }

  /**
   * True when the write at the end of a message may wait: its segment holds
   * the checkpoint (`covered`), nothing but the counters changed since the
   * message (or the batch) began (`settledAtStart` against the status now), and this applier
   * wrote the set's status less than STATUS_WRITE_INTERVAL_MS and
   * STATUS_MAX_DEFERRED_MESSAGES messages ago.
   */
  mayDefer(status: SetStatus, settledAtStart: string, covered: boolean, now: number): boolean {
    const written = this.#written.get(status.set);
    if (!covered || !written || now < written.at || now - written.at >= STATUS_WRITE_INTERVAL_MS || written.deferred >= STATUS_MAX_DEFERRED_MESSAGES) return false;
    return settledFields(status) === settledAtStart;
  }
}
