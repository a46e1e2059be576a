// The set's checkpoint as its history segments carry it. Each segment's
// metadata holds the status counters as they stood once its records were
// applied, so the checkpoint is durable with the segment (one PUT the message
// makes anyway) and the status object need not be rewritten after every
// message: the applier writes it at most every few seconds or messages per
// set (applier/status-schedule.ts), and at once
// whenever anything else in it changes. Every
// reader of the status (readSetStatus) folds the segments written after it.

import { segmentKey } from "../../contract/history.ts";
import type { SetStatus } from "../../contract/layout.ts";
import type { TargetStore } from "./store.ts";

/** Object metadata keys of a segment's checkpoint (lower case: S3 returns them so). */
const KEY = {
  lastSeq: "tidemark-checkpoint-seq",
  records: "tidemark-checkpoint-records",
  bytes: "tidemark-checkpoint-bytes",
  at: "tidemark-checkpoint-at",
  updatedAt: "tidemark-checkpoint-updated",
  generation: "tidemark-checkpoint-generation",
} as const;

/** What a segment records of the status after it: the fields that move with every applied message. */
export interface SegmentCheckpoint {
  readonly lastSeq: number;
  readonly appliedRecords: number;
  readonly appliedBytes: number;
  /** The history cursor's time after the segment (ms). */
  readonly at: number;
  readonly updatedAt: string;
  /** The journal generation the seqs count in; absent for a set that never had one. */
  readonly generation?: string;
}

/** The checkpoint of a status whose history cursor already counts the segment being written. */
export function checkpointOf(status: SetStatus, updatedAt: string): SegmentCheckpoint {
  return {
    lastSeq: status.lastSeq,
    appliedRecords: status.appliedRecords,
    appliedBytes: status.appliedBytes,
    at: status.history?.at ?? 0,
    updatedAt,
    ...(status.generation !== undefined ? { generation: status.generation } : {}),
  };
}

/** True when both name the same applied state (the time written aside). */
export function sameCheckpoint(a: SegmentCheckpoint, b: SegmentCheckpoint): boolean {
  return a.lastSeq === b.lastSeq && a.appliedRecords === b.appliedRecords && a.appliedBytes === b.appliedBytes && a.at === b.at && a.generation === b.generation;
}

export function checkpointMeta(checkpoint: SegmentCheckpoint): Record<string, string> {
  return {
    [KEY.lastSeq]: String(checkpoint.lastSeq),
    [KEY.records]: String(checkpoint.appliedRecords),
    [KEY.bytes]: String(checkpoint.appliedBytes),
    [KEY.at]: String(checkpoint.at),
    [KEY.updatedAt]: checkpoint.updatedAt,
    ...(checkpoint.generation !== undefined ? { [KEY.generation]: checkpoint.generation } : {}),
  };
}

const count = (text: string | undefined): number | undefined => {
  const n = text === undefined || !/^\d+$/.test(text) ? Number.NaN : Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
};

/** The checkpoint a segment's metadata holds; undefined for a segment written without one (or with a damaged one). */
export function parseCheckpointMeta(meta: Readonly<Record<string, string>> | undefined): SegmentCheckpoint | undefined {
  if (!meta) return undefined;
  const lastSeq = count(meta[KEY.lastSeq]);
  const appliedRecords = count(meta[KEY.records]);
  const appliedBytes = count(meta[KEY.bytes]);
  const at = count(meta[KEY.at]);
  const updatedAt = meta[KEY.updatedAt];
  if (lastSeq === undefined || appliedRecords === undefined || appliedBytes === undefined || at === undefined || updatedAt === undefined) return undefined;
  const generation = meta[KEY.generation];
  return { lastSeq, appliedRecords, appliedBytes, at, updatedAt, ...(generation !== undefined ? { generation } : {}) };
}

/**
 * The status with every segment written after it folded in: the true
 * checkpoint when the applier's last status writes were deferred. Stops at the
 * first segment number the store does not hold (one HEAD past the end), or at
 * one without a checkpoint of the status's generation (anything else that
 * changes is written to the status at once, so segments past it only move
 * the counters).
 */
export async function foldSegments(store: TargetStore, status: SetStatus): Promise<SetStatus> {
  for (let cursor = status.history; cursor; cursor = status.history) {
    const checkpoint = parseCheckpointMeta((await store.head(segmentKey(status.set, cursor.segment)))?.meta);
    if (!checkpoint || checkpoint.generation !== status.generation || checkpoint.appliedRecords < status.appliedRecords) break;
    // The segment was written once its records were applied.
    if (checkpoint.lastSeq !== status.lastSeq) status.appliedAt = checkpoint.updatedAt;
    status.lastSeq = checkpoint.lastSeq;
    status.appliedRecords = checkpoint.appliedRecords;
    status.appliedBytes = checkpoint.appliedBytes;
    status.updatedAt = checkpoint.updatedAt;
    status.history = { ...cursor, segment: cursor.segment + 1, at: Math.max(cursor.at, checkpoint.at) };
  }
  return status;
}
