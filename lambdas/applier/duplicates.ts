// Seqs a message repeats (the set applied them before) are not applied again:
// the queue redelivers, and the agent sends again what it was not sure the
// queue took. A second writer on the same journal (a copy of the source host,
// its key and journal included) repeats seqs too, with other changes. So the
// repeated records are compared with what the history recorded at their seqs:
// what a change is (op, path, size, mode, mtime, content SHA-256, link target,
// rename's paths, marker id), never how the message carried it (its
// boundaries, inline, packed or staged content, a delta, when it was sent).
// Only a message that repeats seqs pays: the history segments back to its
// first repeated seq are read (DESIGN 2, 8).

import type { SetStatus } from "../../contract/layout.ts";
import type { HistoryEntry } from "../../contract/history.ts";
import type { WireRecord } from "../../contract/wire.ts";
import { HistoryError, readSegmentWithMeta } from "../history/history-store.ts";
import { parseCheckpointMeta } from "../store/status-checkpoint.ts";
import type { TargetStore } from "../store/store.ts";

export type RepeatVerdict =
  /** Every compared seq holds what was applied at it. */
  | { kind: "same" }
  /** The first seq whose record is not the change applied at it, both described. */
  | { kind: "differs"; seq: number; applied: string; received: string }
  /** Seqs first..last could not be compared (nothing else differed): why. */
  | { kind: "unchecked"; first: number; last: number; reason: string };

/** History segments read back at most for one message: a redelivery is of the last few. */
export const MAX_SEGMENTS_READ = 64;

/**
 * The records of a message at seqs the set applied in its current chain. Seqs before the chain's last restart (its
 * generation's first, or the last resync) were superseded by the mirror after it: they are not compared.
 */
export function repeatedRecords(status: SetStatus, records: readonly WireRecord[]): WireRecord[] {
  const from = chainStart(status);
  return records.filter((r) => r.seq <= status.lastSeq && r.seq >= from);
}

/** The seq the set's chain last restarted at: its generation's first, or its last resync (0: never). */
function chainStart(status: SetStatus): number {
  const began = status.generations?.find((g) => g.id === status.generation)?.seq ?? 0;
  const resynced = status.resynced && status.resynced.generation === status.generation ? status.resynced.seq : 0;
  return Math.max(began, resynced);
}

/**
 * What the history recorded at each seq from `from` through `upTo` (any other seq is unknown: `gap` says why), read
 * back from the newest segment to the first one that ends before seq `first`, or to the newest resync (`restart`).
 */
async function recordedSince(store: TargetStore, status: SetStatus, first: number): Promise<{ bySeq: Map<number, HistoryEntry[]>; from: number; upTo: number; gap?: string; restart?: number }> {
  const bySeq = new Map<number, HistoryEntry[]>();
  let from = Number.POSITIVE_INFINITY;
  let upTo = Number.NEGATIVE_INFINITY;
  const newest = (status.history?.segment ?? 0) - 1;
  const start = chainStart(status);
  for (let n = newest; n >= 0; n--) {
    if (newest - n >= MAX_SEGMENTS_READ) return { bySeq, from, upTo, gap: `they are more than ${MAX_SEGMENTS_READ} history segments back` };
    let segment;
    try {
      segment = await readSegmentWithMeta(store, status.set, n);
    } catch (error) {
      if (error instanceof HistoryError) return { bySeq, from, upTo, gap: error.message };
      throw error;
    }
    if (!segment) return { bySeq, from, upTo, gap: `history segment ${n} is gone (past the protection window, or removed)` };
    const checkpoint = parseCheckpointMeta(segment.meta);
    // Another generation's seqs are not this chain's; a segment without a checkpoint cannot be placed.
    if (!checkpoint || checkpoint.generation !== status.generation) break;
    // The newest segment's checkpoint: the seqs the history holds end there.
    if (n === newest) upTo = checkpoint.lastSeq;
    // Every seq from `first` on is in the segments after this one.
    if (checkpoint.lastSeq < first) return { bySeq, from: Number.NEGATIVE_INFINITY, upTo };
    // The newest resync the history holds restarted the chain: what comes before it, in this segment too, is what it
    // replaced (a new generation or an adoption restarts the checkpoint at lower seqs, in the same batch's segment
    // too), and the message's records before it were superseded. The status names it (resynced) unless its write
    // failed after the segment's.
    const restartAt = segment.entries.findLastIndex((e) => e.op === "clear" && e.seq >= start);
    const restart = segment.entries[restartAt];
    for (const entry of restart ? segment.entries.slice(restartAt) : segment.entries) {
      if (entry.seq < start) continue;
      bySeq.set(entry.seq, [...(bySeq.get(entry.seq) ?? []), entry]);
      // A segment's seqs begin at or before its first entry's: what lies after that is known.
      from = Math.min(from, entry.seq);
    }
    if (restart) return { bySeq, from: restart.seq, upTo, restart: restart.seq };
  }
  return { bySeq, from, upTo, gap: "the set's history does not reach back to them" };
}

function describeEntry(entry: HistoryEntry): string {
  switch (entry.op) {
    case "put":
      return `put ${entry.path} (${entry.size} bytes, sha256 ${entry.sha256.slice(0, 12)}, mode ${entry.mode.toString(8)}, mtime ${entry.mtimeNs})`;
    case "mkdir":
      return `mkdir ${entry.path} (mode ${entry.mode.toString(8)}, mtime ${entry.mtimeNs})`;
    case "symlink":
      return `symlink ${entry.path} -> ${entry.target}`;
    case "delete":
      return `delete ${entry.path}`;
    case "rename":
      return `rename ${entry.from} -> ${entry.to}`;
    case "block":
      return `block ${entry.index} (${entry.sha256 === null ? "zeros" : `sha256 ${entry.sha256.slice(0, 12)}`})`;
    case "clear":
      return "resync";
    case "marker":
      return `task ${entry.id} (${entry.action})`;
  }
}

function describeRecord(record: WireRecord): string {
  switch (record.op) {
    case "put":
      return `put ${record.path} (${record.size} bytes, sha256 ${record.sha256.slice(0, 12)}, mode ${record.mode.toString(8)}, mtime ${record.mtimeNs})`;
    case "mkdir":
      return `mkdir ${record.path} (mode ${record.mode.toString(8)}, mtime ${record.mtimeNs})`;
    case "symlink":
      return `symlink ${record.path} -> ${record.target}`;
    case "delete":
      return `delete ${record.path}`;
    case "rename":
      return `rename ${record.from} -> ${record.to}`;
    case "block":
      return `block ${record.index} (${record.content.kind === "zero" ? "zeros" : `sha256 ${record.sha256.slice(0, 12)}`})`;
    case "resync":
      return "resync";
    case "task":
      return `task ${record.id} (${record.action})`;
    case "verify":
    case "prune":
      return `${record.op} ${record.id}`;
    case "drill":
      return `drill ${record.report.id}`;
    case "skip":
      return "skip";
  }
}

/** True when entry is what applying record recorded. */
function sameChange(record: WireRecord, entry: HistoryEntry): boolean {
  switch (record.op) {
    case "put":
      return (
        entry.op === "put" &&
        entry.path === record.path &&
        entry.size === record.size &&
        entry.mode === record.mode &&
        entry.mtimeNs === record.mtimeNs &&
        entry.sha256 === record.sha256 &&
        // Segments written before the link group was kept have none.
        (entry.linkGroup === undefined || entry.linkGroup === record.linkGroup)
      );
    case "mkdir":
      return entry.op === "mkdir" && entry.path === record.path && entry.mode === record.mode && entry.mtimeNs === record.mtimeNs;
    case "symlink":
      return entry.op === "symlink" && entry.path === record.path && entry.target === record.target && entry.mtimeNs === record.mtimeNs;
    case "delete":
      // The agent takes a rename it could not deliver out of the stream as a delete of its source (poison.ts).
      return (entry.op === "delete" && entry.path === record.path) || (entry.op === "rename" && entry.from === record.path);
    case "rename":
      return entry.op === "rename" && entry.from === record.from && entry.to === record.to;
    case "block":
      return entry.op === "block" && entry.index === record.index && entry.volumeSize === record.volumeSize && entry.sha256 === (record.content.kind === "zero" ? null : record.sha256);
    case "resync":
      return entry.op === "clear";
    case "task":
      return entry.op === "marker" && entry.id === record.id && entry.action === record.action && entry.label === record.label;
    case "verify":
      // Its orphans' removals are recorded at its seq.
      return entry.op === "delete";
    case "prune":
    case "drill":
    case "skip":
      return false;
  }
}

/** Why the history recorded nothing a record could be compared with at its seq. */
const UNRECORDED = "the set's history records no change at them (applied while history was off, or as records that change nothing)";

/**
 * Why record is not the change recorded at its seq (entries), or undefined when it is; UNRECORDED when the history
 * holds no change there to compare a change with.
 */
function difference(record: WireRecord, entries: readonly HistoryEntry[]): { applied: string; received: string } | typeof UNRECORDED | undefined {
  // A skip is the agent giving up a record it could not deliver (poison.ts): it changes nothing, whatever was applied.
  if (record.op === "skip") return undefined;
  // Markers sent straight to the queue are recorded at the seq they followed; only an in-stream marker is the record's.
  const own = entries.filter((e) => e.op !== "marker" || (record.op === "task" && e.id === record.id));
  // What records nothing (a prune, a drill, a verify without orphans) matches an empty seq. A change at a seq that
  // holds none is not compared: seqs applied while history was off leave none, and the record applied may have been
  // one that changes nothing (a skip: an older copy of the journal restored on the host may send the record it replaced).
  const recordsNothing = record.op === "prune" || record.op === "drill" || record.op === "verify";
  if (own.length === 0) return recordsNothing ? undefined : UNRECORDED;
  if (own.every((e) => sameChange(record, e))) return undefined;
  return { applied: own.map(describeEntry).join(", "), received: describeRecord(record) };
}

/**
 * Compares records the set applied before (repeatedRecords) with what the history recorded at their seqs. The waiting
 * entries of the batch must be written first (BatchSegments.waitingFor(status).flush()).
 */
export async function compareWithHistory(store: TargetStore, status: SetStatus, records: readonly WireRecord[]): Promise<RepeatVerdict> {
  const first = records[0];
  if (!first) return { kind: "same" };
  const recorded = await recordedSince(store, status, first.seq);
  let unchecked: { first: number; last: number; reason: string } | undefined;
  const notCompared = (seq: number, reason: string) => {
    unchecked = { first: unchecked?.first ?? seq, last: seq, reason: unchecked?.reason ?? reason };
  };
  for (const record of records) {
    // Superseded by the resync that restarted the chain after them: never applied in it.
    if (recorded.restart !== undefined && record.seq < recorded.restart) continue;
    if (record.seq > recorded.upTo) notCompared(record.seq, "the set's history has not recorded them");
    else if (record.seq < recorded.from) notCompared(record.seq, recorded.gap ?? "the set's history does not reach back to them");
    else {
      const differs = difference(record, recorded.bySeq.get(record.seq) ?? []);
      if (differs === UNRECORDED) notCompared(record.seq, UNRECORDED);
      else if (differs) return { kind: "differs", seq: record.seq, ...differs };
    }
  }
  return unchecked ? { kind: "unchecked", ...unchecked } : { kind: "same" };
}
