// Reading and writing a set's history objects (contract/history.ts): segments
// and checkpoints, through one typed module rather than at each call site.

import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import {
  checkpointManifestKey,
  checkpointsPrefix,
  checkpointSummaryKey,
  CheckpointBlockSchema,
  CheckpointEntrySchema,
  CheckpointSummarySchema,
  HistoryEntrySchema,
  segmentKey,
  segmentNumber,
  segmentsPrefix,
  type CheckpointSummary,
  type HistoryEntry,
} from "../../contract/history.ts";
import type { SnapshotEntry, VolumeBlockEntry } from "../../contract/tasks.ts";
import type { TargetStore } from "../store/store.ts";

export class HistoryError extends Error {
  override name = "HistoryError";
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function jsonLines(lines: readonly unknown[]): Buffer {
  return gzipSync(lines.map((line) => `${JSON.stringify(line)}\n`).join(""));
}

function parseLines(body: Buffer, what: string): unknown[] {
  let text: string;
  try {
    text = gunzipSync(body).toString("utf8");
  } catch (error) {
    throw new HistoryError(`${what} does not gunzip: ${(error as Error).message}`);
  }
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line): unknown => JSON.parse(line));
}

/** Writes segment n of a set (replacing what a retried message wrote there before); meta carries the set's checkpoint after it. */
export async function writeSegment(store: TargetStore, set: string, n: number, entries: readonly HistoryEntry[], meta: Record<string, string> = {}): Promise<void> {
  await store.put(segmentKey(set, n), jsonLines(entries), meta);
}

/** The entries of segment n; throws HistoryError when it is missing or unreadable. */
export async function readSegment(store: TargetStore, set: string, n: number): Promise<HistoryEntry[]> {
  const segment = await readSegmentWithMeta(store, set, n);
  if (!segment) throw new HistoryError(`history segment ${n} of set "${set}" is missing: the history after it cannot be replayed`);
  return segment.entries;
}

/** The entries of segment n and its object metadata (the checkpoint after it); undefined when the store holds no segment n. Throws HistoryError when it is unreadable. */
export async function readSegmentWithMeta(store: TargetStore, set: string, n: number): Promise<{ entries: HistoryEntry[]; meta: Record<string, string> } | undefined> {
  const object = await store.get(segmentKey(set, n));
  if (!object) return undefined;
  let lines: unknown[];
  try {
    lines = parseLines(object.body, `history segment ${n} of set "${set}"`);
  } catch (error) {
    if (error instanceof SyntaxError) throw new HistoryError(`history segment ${n} of set "${set}" holds a line that is not JSON: ${error.message}`);
    throw error;
  }
  const entries = lines.map((line) => {
    const parsed = HistoryEntrySchema.safeParse(line);
    if (!parsed.success) throw new HistoryError(`history segment ${n} of set "${set}" holds an entry that is not one: ${parsed.error.message}`);
    return parsed.data;
  });
  return { entries, meta: object.meta };
}

/** Segment numbers the store holds, in order. */
export async function listSegments(store: TargetStore, set: string): Promise<number[]> {
  const numbers: number[] = [];
  for await (const object of store.list(segmentsPrefix(set))) {
    const n = segmentNumber(set, object.key);
    if (n !== undefined) numbers.push(n);
  }
  return numbers.sort((a, b) => a - b);
}

export async function deleteSegment(store: TargetStore, set: string, n: number): Promise<void> {
  await store.delete(segmentKey(set, n));
}

/** Writes a checkpoint: its manifest first, then its summary, so a listed checkpoint is complete. */
export async function writeCheckpoint(
  store: TargetStore,
  summary: Omit<CheckpointSummary, "manifestSha256" | "entries">,
  lines: readonly (SnapshotEntry | VolumeBlockEntry)[],
): Promise<CheckpointSummary> {
  const manifest = jsonLines(lines);
  const complete: CheckpointSummary = { ...summary, entries: lines.length, manifestSha256: sha256(manifest) };
  await store.put(checkpointManifestKey(summary.set, summary.segment), manifest, {});
  await store.put(checkpointSummaryKey(summary.set, summary.segment), Buffer.from(JSON.stringify(complete)), {});
  return complete;
}

/** The set's checkpoints, oldest first. */
export async function listCheckpoints(store: TargetStore, set: string): Promise<CheckpointSummary[]> {
  const out: CheckpointSummary[] = [];
  for await (const object of store.list(checkpointsPrefix(set))) {
    if (!object.key.endsWith(".json")) continue;
    const body = (await store.get(object.key))?.body;
    if (!body) continue;
    const parsed = CheckpointSummarySchema.safeParse(JSON.parse(body.toString("utf8")));
    if (parsed.success) out.push(parsed.data);
  }
  return out.sort((a, b) => a.segment - b.segment);
}

async function checkpointLines(store: TargetStore, summary: CheckpointSummary): Promise<unknown[]> {
  const body = (await store.get(checkpointManifestKey(summary.set, summary.segment)))?.body;
  if (!body) throw new HistoryError(`the manifest of history checkpoint ${summary.segment} of set "${summary.set}" is missing`);
  if (sha256(body) !== summary.manifestSha256) throw new HistoryError(`the manifest of history checkpoint ${summary.segment} of set "${summary.set}" does not match its recorded sha256`);
  return parseLines(body, `history checkpoint ${summary.segment}`);
}

/** The entries of a file set's checkpoint. */
export async function readCheckpointEntries(store: TargetStore, summary: CheckpointSummary): Promise<SnapshotEntry[]> {
  if (summary.kind !== "files") throw new HistoryError(`history checkpoint ${summary.segment} is of a volume`);
  return (await checkpointLines(store, summary)).map((line) => CheckpointEntrySchema.parse(line));
}

/** The blocks holding data in a volume set's checkpoint. */
export async function readCheckpointBlocks(store: TargetStore, summary: CheckpointSummary): Promise<VolumeBlockEntry[]> {
  if (summary.kind !== "volume") throw new HistoryError(`history checkpoint ${summary.segment} is of a file set`);
  return (await checkpointLines(store, summary)).map((line) => CheckpointBlockSchema.parse(line));
}

export async function deleteCheckpoint(store: TargetStore, set: string, segment: number): Promise<void> {
  // The summary first: a half-deleted checkpoint is no longer listed.
  await store.delete(checkpointSummaryKey(set, segment));
  await store.delete(checkpointManifestKey(set, segment));
}
