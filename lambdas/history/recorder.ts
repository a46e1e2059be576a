// The applier's side of point-in-time history: per applied message, one
// segment of what changed (at most one extra request per message), content
// preserved before it is replaced, and now and then a checkpoint of the live
// mirror, so a restore is a checkpoint plus a short replay. Retention past the
// window runs here, on the applier's schedule, never on an agent's word.

import { dataPrefix, decodeMeta, META, preservedKey, type SetStatus } from "../../contract/layout.ts";
import { DAY_MS, type HistoryCursor, type HistoryEntry } from "../../contract/history.ts";
import type { WireRecord } from "../../contract/wire.ts";
import type { TargetStore } from "../store/store.ts";
import { liveManifest } from "../tasks/snapshots.ts";
import { VolumeMap } from "../volumes/block-map.ts";
import { listCheckpoints, readCheckpointEntries, writeCheckpoint, writeSegment } from "./history-store.ts";
import { applyHistoryRetention } from "./retention.ts";
import { checkpointMeta, checkpointOf, sameCheckpoint, type SegmentCheckpoint } from "../store/status-checkpoint.ts";

export interface HistorySettings {
  /** Days every moment of a set restores (tidemark:pointInTimeDays); 0 turns history off. */
  readonly days: number;
  /** Segments between checkpoints at most (one is also written a day after the last). @default 10000 */
  readonly checkpointEvery?: number;
  /** How often retention runs (ms). @default a day */
  readonly retentionEveryMs?: number;
}

const DEFAULT_CHECKPOINT_EVERY = 10_000;

/** Prune options that keep what the protection window needs: no snapshot taken inside it, no content (history retention sweeps it). */
export function windowPruneOptions(settings: HistorySettings, now: Date): { protectFrom?: Date; leaveContent?: boolean } {
  if (settings.days <= 0) return {};
  return { protectFrom: new Date(now.getTime() - settings.days * DAY_MS), leaveContent: true };
}
/** Content hashes known to be preserved, per set, before the cache starts over (bounds memory). */
const PRESERVED_CACHE_LIMIT = 100_000;

/** Hashes already under preserved/ (per set): a hash is copied there once. */
export type PreservedCache = Map<string, Set<string>>;

export class HistoryRecorder {
  readonly #store: TargetStore;
  readonly #set: string;
  readonly #status: SetStatus;
  readonly #settings: HistorySettings;
  readonly #now: () => Date;
  readonly #cursor: HistoryCursor;
  readonly #preserved: Set<string>;
  #entries: HistoryEntry[] = [];
  /** The checkpoint the newest segment written here carries. */
  #covered: SegmentCheckpoint | undefined;

  private constructor(store: TargetStore, set: string, status: SetStatus, settings: HistorySettings, now: () => Date, cursor: HistoryCursor, preserved: Set<string>) {
    this.#store = store;
    this.#set = set;
    this.#status = status;
    this.#settings = settings;
    this.#now = now;
    this.#cursor = cursor;
    this.#preserved = preserved;
  }

  /**
   * The recorder for one message of a set. The first time a set is seen, its
   * live mirror as it is (empty for a new set) becomes checkpoint 0, stamped
   * just before the message's first record, and the status is persisted.
   */
  static async open(
    store: TargetStore,
    set: string,
    status: SetStatus,
    settings: HistorySettings,
    options: { now: () => Date; records: readonly WireRecord[]; cache: PreservedCache; persist: () => Promise<void> },
  ): Promise<HistoryRecorder> {
    let preserved = options.cache.get(set);
    if (!preserved || preserved.size > PRESERVED_CACHE_LIMIT) options.cache.set(set, (preserved = new Set()));
    if (status.history) return new HistoryRecorder(store, set, status, settings, options.now, status.history, preserved);
    const now = options.now().getTime();
    const first = options.records[0]?.at ?? now;
    const at = Math.max(0, Math.min(first, now) - 1);
    const volume = options.records.some((r) => r.op === "block") || (await VolumeMap.open(store, set)).exists;
    const cursor: HistoryCursor = { segment: 0, at, checkpointSegment: 0, checkpointWrittenAt: now, sweptAt: now, days: settings.days };
    const recorder = new HistoryRecorder(store, set, status, settings, options.now, cursor, preserved);
    await recorder.#checkpoint(volume);
    status.history = cursor;
    await options.persist();
    return recorder;
  }

  /** The time a record counts at: the agent's, never before the entry before it nor after the applier's clock. */
  #stamp(at: number | undefined): number {
    const now = this.#now().getTime();
    this.#cursor.at = Math.max(this.#cursor.at, Math.min(at ?? now, now));
    return this.#cursor.at;
  }

  /**
   * Before the live object at key is overwritten, moved or deleted: its
   * content goes to preserved/<set>/<sha256> (once per hash), so every moment
   * of the window that held it still restores.
   */
  async preserve(key: string): Promise<void> {
    const head = await this.#store.head(key);
    const meta = decodeMeta(head?.meta);
    if (!meta || meta.kind !== "file" || !meta.sha256 || this.#preserved.has(meta.sha256)) return;
    const target = preservedKey(this.#set, meta.sha256);
    if (!(await this.#store.head(target))) await this.#store.copy(key, target, { [META.sha256]: meta.sha256 });
    this.#preserved.add(meta.sha256);
  }

  /** An orphan a verification is about to delete or move aside: preserved, and its removal logged. */
  async removing(key: string, by: WireRecord): Promise<void> {
    await this.preserve(key);
    const path = key.slice(dataPrefix(this.#set).length).replace(/\/$/, "");
    this.#entries.push({ op: "delete", seq: by.seq, at: this.#stamp(by.at), path });
  }

  /** A marker sent straight to the queue (no seq of its own) was reached after the set's seq `after`: its own segment, then the status. */
  async recordMarker(marker: { id: string; fields: { action: string; label?: string } }, after: number, writeStatus: () => Promise<void>): Promise<void> {
    const label = marker.fields.label !== undefined ? { label: marker.fields.label } : {};
    this.#entries.push({ op: "marker", seq: after, at: this.#stamp(undefined), id: marker.id, action: marker.fields.action, ...label });
    await this.flush();
    await writeStatus();
  }

  /** A record reached the store (called in seq order). */
  applied(record: WireRecord): void {
    const entry = this.#entryOf(record);
    if (entry) this.#entries.push(entry);
  }

  #entryOf(record: WireRecord): HistoryEntry | undefined {
    const base = { seq: record.seq, at: this.#stamp(record.at) };
    switch (record.op) {
      case "put":
        return { ...base, op: "put", path: record.path, size: record.size, mode: record.mode, mtimeNs: record.mtimeNs, sha256: record.sha256 };
      case "mkdir":
        return { ...base, op: "mkdir", path: record.path, mode: record.mode, mtimeNs: record.mtimeNs };
      case "symlink":
        return { ...base, op: "symlink", path: record.path, target: record.target, mtimeNs: record.mtimeNs };
      case "delete":
        return { ...base, op: "delete", path: record.path };
      case "rename":
        return { ...base, op: "rename", from: record.from, to: record.to };
      case "block":
        return { ...base, op: "block", index: record.index, volumeSize: record.volumeSize, sha256: record.content.kind === "zero" ? null : record.sha256 };
      case "resync":
        // A volume's blocks start again from zeros; a file set's tree is what the mirror after it makes of it.
        return { ...base, op: "clear" };
      case "task":
        return { ...base, op: "marker", id: record.id, action: record.action, ...(record.label !== undefined ? { label: record.label } : {}) };
      case "verify":
      case "prune":
      case "skip":
      case "drill":
        return undefined;
    }
  }

  /** Writes what was recorded since the last flush as the next segment; the caller then writes the status, which names it. */
  async flush(): Promise<void> {
    if (this.#entries.length === 0) return;
    // The segment carries the checkpoint as it stands once its records count: readers fold it if the status waits.
    const checkpoint = checkpointOf({ ...this.#status, history: { ...this.#cursor, segment: this.#cursor.segment + 1 } }, this.#now().toISOString());
    await writeSegment(this.#store, this.#set, this.#cursor.segment, this.#entries, checkpointMeta(checkpoint));
    this.#cursor.segment += 1;
    this.#entries = [];
    this.#status.history = this.#cursor;
    this.#covered = checkpoint;
  }

  /** True when the newest segment written here holds the status's checkpoint as it is now: its own write may wait. */
  covers(): boolean {
    return this.#covered !== undefined && sameCheckpoint(this.#covered, checkpointOf(this.#status, this.#covered.updatedAt));
  }

  /** At the end of a message: the last segment, then a checkpoint and retention when due. */
  async finish(): Promise<void> {
    await this.flush();
    const now = this.#now().getTime();
    const since = this.#cursor.segment - this.#cursor.checkpointSegment;
    const due = since >= (this.#settings.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY) || (since > 0 && now - this.#cursor.checkpointWrittenAt >= DAY_MS);
    if (!due) return;
    const volume = (await VolumeMap.open(this.#store, this.#set)).exists;
    await this.#checkpoint(volume);
    this.#cursor.days = this.#settings.days;
    if (now - this.#cursor.sweptAt >= (this.#settings.retentionEveryMs ?? DAY_MS)) {
      await applyHistoryRetention(this.#store, this.#set, this.#settings.days, this.#now());
      this.#cursor.sweptAt = now;
    }
    this.#status.history = this.#cursor;
  }

  /** Writes a checkpoint of the live mirror (or the volume's block map) covering every segment before the cursor's. */
  async #checkpoint(volume: boolean): Promise<void> {
    const writtenAt = this.#now().getTime();
    const summary = { set: this.#set, segment: this.#cursor.segment, at: this.#cursor.at, writtenAt };
    if (volume) {
      const map = await VolumeMap.open(this.#store, this.#set);
      await writeCheckpoint(this.#store, { ...summary, kind: "volume", volumeSize: map.state.size }, await map.entries());
    } else {
      // Like a snapshot: objects not written since the previous checkpoint keep its entries, without a HEAD each.
      const previous = (await listCheckpoints(this.#store, this.#set)).at(-1);
      const known = previous?.kind === "files" ? { takenAt: new Date(previous.writtenAt).toISOString(), entries: await readCheckpointEntries(this.#store, previous) } : undefined;
      await writeCheckpoint(this.#store, { ...summary, kind: "files" }, await liveManifest(this.#store, this.#set, known));
    }
    this.#cursor.checkpointSegment = this.#cursor.segment;
    this.#cursor.checkpointWrittenAt = writtenAt;
  }
}
