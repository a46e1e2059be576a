// The applier's side of point-in-time history: per batch of a set's messages
// (per message outside a batch), one segment of what changed (at most one
// extra request per batch, applier/batch-segments.ts), and now
// and then a checkpoint of the live mirror, so a restore is a checkpoint plus
// a short replay. Replaced content stays restorable: on a versioned bucket as
// the noncurrent version the segment names (no request at all), on an
// unversioned one copied to preserved/ before it is replaced. Retention past
// the window runs here, on the applier's schedule, never on an agent's word.

import { dataKey, dataPrefix, decodeMeta, type SetStatus } from "../../contract/layout.ts";
import { DAY_MS, type HistoryCursor, type HistoryEntry } from "../../contract/history.ts";
import type { WireRecord } from "../../contract/wire.ts";
import { ObjectNotFoundError, SourceChangedError, type TargetStore, type WriteResult } from "../store/store.ts";
import { liveManifest } from "../tasks/snapshots.ts";
import { VolumeMap } from "../volumes/block-map.ts";
import { listCheckpoints, readCheckpointEntries, writeCheckpoint, writeSegment } from "./history-store.ts";
import type { HistoryMemory, LiveContent } from "./live-content.ts";
import { listPreserved, preserveContent } from "./preserved-content.ts";
import { applyHistoryRetention } from "./retention.ts";
import { checkpointMeta, checkpointOf, sameCheckpoint, type SegmentCheckpoint } from "../store/status-checkpoint.ts";
import { noteUnreadable } from "./checkpoint-unreadable.ts";
import { recordTime } from "./record-time.ts";

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
export class HistoryRecorder {
  readonly #store: TargetStore;
  readonly #set: string;
  readonly #status: SetStatus;
  readonly #settings: HistorySettings;
  readonly #now: () => Date;
  readonly #cursor: HistoryCursor;
  readonly #memory: HistoryMemory;
  readonly #live: LiveContent;
  /** The bucket keeps replaced versions: nothing is preserved, entries name the versions written. */
  readonly #versioned: boolean;
  /** What each write of this message made, by data key, until its record is recorded. */
  readonly #writes = new Map<string, WriteResult>();
  #entries: HistoryEntry[] = [];
  /** The checkpoint the newest segment written here carries. */
  #covered: SegmentCheckpoint | undefined;
  /** Entries of the messages that ended since the last flush (the first `entries`), and the checkpoint after them. */
  #ended: { entries: number; checkpoint: SegmentCheckpoint } | undefined;
  /** The message under way was abandoned: the next segment carries the checkpoint of the messages that ended. */
  #pinned: SegmentCheckpoint | undefined;
  /** When the queue says the message under way was sent (ms): its records count no earlier than an hour before. */
  #sentAt: number | undefined;
  /** When `tidemark adopt` made the message's signer the set's owner (ms): its records count no earlier. */
  #ownerSince: number | undefined;

  private constructor(
    store: TargetStore,
    set: string,
    status: SetStatus,
    settings: HistorySettings,
    now: () => Date,
    cursor: HistoryCursor,
    memory: { history: HistoryMemory; live: LiveContent; versioned: boolean },
  ) {
    this.#store = store;
    this.#set = set;
    this.#status = status;
    this.#settings = settings;
    this.#now = now;
    this.#cursor = cursor;
    this.#memory = memory.history;
    this.#live = memory.live;
    this.#versioned = memory.versioned;
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
    options: { now: () => Date; records: readonly WireRecord[]; memory: HistoryMemory; persist: () => Promise<void>; sentAt?: number | undefined; ownerSince?: number | undefined },
  ): Promise<HistoryRecorder> {
    const memory = { history: options.memory, live: options.memory.open(set, status), versioned: await options.memory.versioned(store) };
    if (status.history) return new HistoryRecorder(store, set, status, settings, options.now, status.history, memory).sent(options.sentAt, options.ownerSince);
    const now = options.now().getTime();
    // Just before the first record as it counts: the same bound as every record's time.
    const at = Math.max(0, recordTime(0, options.records[0]?.at, now, options.sentAt, options.ownerSince) - 1);
    const volume = options.records.some((r) => r.op === "block") || (await VolumeMap.open(store, set)).exists;
    const cursor: HistoryCursor = { segment: 0, at, checkpointSegment: 0, checkpointWrittenAt: now, sweptAt: now, days: settings.days };
    const recorder = new HistoryRecorder(store, set, status, settings, options.now, cursor, memory).sent(options.sentAt, options.ownerSince);
    await recorder.#checkpoint(volume);
    status.history = cursor;
    await options.persist();
    return recorder;
  }

  /**
   * The message whose records come next was sent at `sentAt` (the queue's SentTimestamp, ms; undefined: unknown),
   * signed by a key `tidemark adopt` made the set's owner at `ownerSince` (ms; undefined: the first owner, or unknown).
   */
  sent(sentAt: number | undefined, ownerSince?: number): this {
    this.#sentAt = sentAt;
    this.#ownerSince = ownerSince;
    return this;
  }

  /**
   * The time a record counts at: the agent's, never before the entry before it, long before its message was sent,
   * before its signer was adopted as the owner, nor after the applier's clock.
   */
  #stamp(at: number | undefined): number {
    const now = this.#now().getTime();
    this.#cursor.at = recordTime(this.#cursor.at, at, now, this.#sentAt, this.#ownerSince);
    return this.#cursor.at;
  }

  /**
   * Before the live object at key is overwritten, moved or deleted: on an
   * unversioned bucket its content goes to preserved/<set>/<sha256> (once per
   * hash), so every moment of the window that held it still restores. The
   * HEAD that finds its hash is spared where this instance knows it. On a
   * versioned bucket nothing: the replaced version stays as a noncurrent one.
   */
  async preserve(key: string): Promise<void> {
    if (this.#versioned) return;
    const known = this.#live.contentAt(key);
    try {
      // null is an answer too (nothing to preserve there): only an unknown key is asked about.
      await this.#preserveContent(key, known !== undefined ? known : await this.#contentOf(key));
    } catch (error) {
      // The object went or changed behind this applier's back (by hand, or another instance's partial apply): ask the store what is there.
      if (!(error instanceof ObjectNotFoundError || error instanceof SourceChangedError) || known === undefined) throw error;
      await this.#preserveContent(key, await this.#contentOf(key));
    }
  }

  /** The hash of the file at key as its metadata names it (null: nothing to preserve), remembered. */
  async #contentOf(key: string): Promise<string | null> {
    const head = await this.#store.head(key);
    const meta = decodeMeta(head?.meta);
    const sha256 = meta?.kind === "file" && meta.sha256 ? meta.sha256 : null;
    this.#live.tagged(key, head?.etag);
    this.#live.learn(key, sha256);
    return sha256;
  }

  async #preserveContent(key: string, sha256: string | null): Promise<void> {
    if (sha256 !== null) await preserveContent(this.#store, this.#set, key, sha256, this.#live);
  }

  /**
   * What a write to the live object at key made (called before its record is
   * applied): on a versioned bucket the version the record's entry names. A
   * store that answers a versioned write without its version is asked.
   */
  async written(key: string, result: WriteResult): Promise<void> {
    if (!this.#versioned) return this.#live.tagged(key, result.etag);
    const versionId = result.versionId ?? (await this.#store.head(key))?.versionId;
    this.#writes.set(key, versionId !== undefined ? { ...result, versionId } : result);
  }

  /** An orphan a verification is about to delete or move aside: preserved, and its removal logged. */
  async removing(key: string, by: WireRecord): Promise<void> {
    await this.preserve(key);
    this.#live.learn(key, null);
    const path = key.slice(dataPrefix(this.#set).length).replace(/\/$/, "");
    this.#entries.push({ op: "delete", seq: by.seq, at: this.#stamp(by.at), path });
  }

  /** A marker sent straight to the queue (no seq of its own) was reached after the set's seq `after`: its own segment, then the status. */
  async recordMarker(marker: { id: string; fields: { action: string; label?: string } }, after: number, writeStatus: () => Promise<void>): Promise<void> {
    const label = marker.fields.label !== undefined ? { label: marker.fields.label } : {};
    this.#entries.push({ op: "marker", seq: after, at: this.#stamp(undefined), id: marker.id, action: marker.fields.action, ...label });
    await this.flush();
    await writeStatus();
    this.#memory.finished(this.#live, this.#status);
  }

  /** A record reached the store (called in seq order). */
  applied(record: WireRecord): void {
    const entry = this.#entryOf(record);
    if (entry) this.#entries.push(entry);
    this.#learn(record);
  }

  /** What the live mirror holds after a record, for the next preserve. */
  #learn(record: WireRecord): void {
    if (this.#versioned) return;
    const key = (path: string) => dataKey(this.#set, path);
    if (record.op === "put") this.#live.learn(key(record.path), record.sha256);
    else if (record.op === "symlink" || record.op === "delete") this.#live.learn(key(record.path), null);
    else if (record.op === "rename") {
      this.#live.learn(key(record.to), this.#live.contentAt(key(record.from)));
      this.#live.learn(key(record.from), null);
    }
  }

  /** The version a write of this message made at the path's live object, once. */
  #versionAt(path: string): { versionId?: string } {
    const key = dataKey(this.#set, path);
    const versionId = this.#writes.get(key)?.versionId;
    this.#writes.delete(key);
    return versionId !== undefined ? { versionId } : {};
  }

  #entryOf(record: WireRecord): HistoryEntry | undefined {
    const base = { seq: record.seq, at: this.#stamp(record.at) };
    switch (record.op) {
      case "put":
        return {
          ...base,
          op: "put",
          path: record.path,
          size: record.size,
          mode: record.mode,
          mtimeNs: record.mtimeNs,
          sha256: record.sha256,
          ...this.#versionAt(record.path),
          // Kept so that restore --at links the files of a group again, as a snapshot's restore does.
          ...(record.linkGroup !== undefined ? { linkGroup: record.linkGroup } : {}),
        };
      case "mkdir":
        return { ...base, op: "mkdir", path: record.path, mode: record.mode, mtimeNs: record.mtimeNs };
      case "symlink":
        return { ...base, op: "symlink", path: record.path, target: record.target, mtimeNs: record.mtimeNs };
      case "delete":
        return { ...base, op: "delete", path: record.path };
      case "rename":
        return { ...base, op: "rename", from: record.from, to: record.to, ...this.#versionAt(record.to) };
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
    // Nothing recorded: the status written next carries the checkpoint. After an abandoned message nothing is
    // written but the segment, which then holds the checkpoint of the messages that ended even if they recorded nothing.
    if (this.#entries.length === 0 && this.#pinned === undefined) {
      this.#ended = undefined;
      return;
    }
    // The segment carries the checkpoint as it stands once its records count: readers fold it if the status waits.
    const checkpoint = this.#pinned ?? this.#nextCheckpoint();
    await writeSegment(this.#store, this.#set, this.#cursor.segment, this.#entries, checkpointMeta(checkpoint));
    this.#cursor.segment += 1;
    this.#entries = [];
    this.#ended = undefined;
    this.#pinned = undefined;
    this.#status.history = this.#cursor;
    this.#covered = checkpoint;
  }

  /** The checkpoint of the status as it is now, once the next segment counts. */
  #nextCheckpoint(): SegmentCheckpoint {
    return checkpointOf({ ...this.#status, history: { ...this.#cursor, segment: this.#cursor.segment + 1 } }, this.#now().toISOString());
  }

  /**
   * At the end of a message whose entries wait for the batch's segment
   * (applier/batch-segments.ts): they stay here, counted as complete, with
   * the checkpoint after them. A due checkpoint of the live mirror is written
   * now (it needs every segment before it written).
   */
  async endMessage(): Promise<void> {
    if (this.checkpointDue()) await this.#finish();
    this.#ended = { entries: this.#entries.length, checkpoint: this.#nextCheckpoint() };
  }

  /**
   * The message under way failed part way (it will be delivered again): its
   * entries go, and the next flush writes those of the messages that ended,
   * with the checkpoint after the last of them.
   */
  abandon(): void {
    this.#entries = this.#entries.slice(0, this.#ended?.entries ?? 0);
    this.#pinned = this.#ended?.checkpoint;
  }

  /** The batch's segment is written and its status follows: the next message of the set may trust this instance's memory of its live content. */
  finished(): void {
    this.#memory.finished(this.#live, this.#status);
  }

  /** True when the newest segment written here holds the status's checkpoint as it is now: its own write may wait. */
  covers(): boolean {
    return this.#covered !== undefined && sameCheckpoint(this.#covered, checkpointOf(this.#status, this.#covered.updatedAt));
  }

  /** At the end of a message: the last segment, then a checkpoint and retention when due. */
  async finish(): Promise<void> {
    await this.#finish();
    this.#memory.finished(this.#live, this.#status);
  }

  /** The history segment this message's records go into next. */
  get nextSegment(): number {
    return this.#cursor.segment;
  }

  /** True when finishing the message now writes a checkpoint of the live mirror (it reads every object, folders included). */
  checkpointDue(): boolean {
    const since = this.#cursor.segment + (this.#entries.length > 0 ? 1 : 0) - this.#cursor.checkpointSegment;
    return since >= (this.#settings.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY) || (since > 0 && this.#now().getTime() - this.#cursor.checkpointWrittenAt >= DAY_MS);
  }

  async #finish(): Promise<void> {
    await this.flush();
    const now = this.#now().getTime();
    if (!this.checkpointDue()) return;
    const volume = (await VolumeMap.open(this.#store, this.#set)).exists;
    await this.#checkpoint(volume);
    this.#cursor.days = this.#settings.days;
    if (now - this.#cursor.sweptAt >= (this.#settings.retentionEveryMs ?? DAY_MS)) {
      await applyHistoryRetention(this.#store, this.#set, this.#settings.days, this.#now());
      if (!this.#versioned) await listPreserved(this.#store, this.#set, this.#live);
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
      // An object that cannot be read is left out and named, never a reason to stall the set (DESIGN: one bad record never blocks a set).
      const unreadable: { path: string; reason: string }[] = [];
      const entries = await liveManifest(this.#store, this.#set, known, (path, error) => unreadable.push({ path, reason: error.message }));
      unreadable.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      await writeCheckpoint(this.#store, { ...summary, kind: "files", ...(unreadable.length > 0 ? { unreadable } : {}) }, entries);
      noteUnreadable(this.#status, { at: new Date(writtenAt).toISOString(), segment: summary.segment, unreadable });
      if (!this.#versioned) {
        this.#live.seed(entries, (path) => dataKey(this.#set, path));
        await listPreserved(this.#store, this.#set, this.#live);
      }
    }
    this.#cursor.checkpointSegment = this.#cursor.segment;
    this.#cursor.checkpointWrittenAt = writtenAt;
  }
}
