// The applier: takes one queue message of a set, validates it, and applies its
// records in seq order to the live mirror, keeping the per-set checkpoint so a
// redelivered message changes nothing (DESIGN 2).

import { createHash } from "node:crypto";
import { blockDataKey, dataKey, dirKey, drillReportKey, encodeMeta, initialStatus, META, pruneReportKey, stagingKey, statusKey, verifyReportKey, type SetStatus } from "../../contract/layout.ts";
import { snapshotIdFor, type PruneReport, type SnapshotSummary } from "../../contract/tasks.ts";
import { setNameProblem } from "../../contract/paths.ts";
import { withinMetadataLimit } from "../../contract/link-meta.ts";
import {
  BadMessageError,
  blockLength,
  decodeInline,
  deltaBytes,
  isMarkerMessage,
  parseMessage,
  type ManifestEntry,
  type MarkerMessage,
  type BlockRecord,
  type PutRecord,
  type VerifyRecord,
  type WireRecord,
} from "../../contract/wire.ts";
import { mapConcurrent } from "../../contract/async.ts";
import { parseManifest, verifyTarget } from "./verify.ts";
import { drillMetricsLine } from "./metrics.ts";
import { holdsStream, MarkerContinuesError, runMarker, type Marker, type TaskSettings } from "./markers.ts";
import { enterGeneration } from "./generations.ts";
import { preserveBeforeReplace, pruneSnapshots, takeSnapshot } from "../tasks/snapshots.ts";
import { readStoredStatus } from "../store/set-status.ts";
import { foldSegments } from "../store/status-checkpoint.ts";
import { VolumeMap } from "../volumes/block-map.ts";
import { takeVolumeSnapshot } from "../volumes/volume-snapshots.ts";
import { checkSnapshot, onlySourceLimited } from "../tasks/snapshot-checks.ts";
import type { TargetStore, WriteResult } from "../store/store.ts";
import { SignedOwnership, type OwnershipCheck, type Refusal } from "./ownership.ts";
import { withRefusal } from "./refusals.ts";
import { checkInOrder, checkStaged } from "./staged-content.ts";
import { AcceptsAnnouncer } from "./announce-accepts.ts";
import { MessagePackReader } from "./packed-content.ts";
import { applyDelta, DeltaBaseError } from "./delta-rebuild.ts";
import { DEFAULT_POINT_IN_TIME_DAYS } from "../../contract/history.ts";
import { HistoryRecorder, windowPruneOptions, type HistorySettings } from "../history/recorder.ts";
import { HistoryMemory } from "../history/live-content.ts";
import { settledFields, StatusSchedule } from "./status-schedule.ts";
import { DeferredFolders, readsFolders } from "./folder-writes.ts";
import { renamedBefore } from "./renames.ts";
import { ReapplyGuard } from "./reapply.ts";
import { renameStamps, writeStamp } from "./write-stamps.ts";
import type { BatchMemory } from "./batch-memory.ts";
import { BatchSegments } from "./batch-segments.ts";
import { compareWithHistory, repeatedRecords } from "./duplicates.ts";
import { readOwner } from "../target/owner.ts";

export interface IncomingMessage {
  readonly messageId: string;
  /** The SQS MessageGroupId: the set the sender claims the message is for. */
  readonly groupId: string | undefined;
  readonly body: string;
  /** SQS message attributes (string values): the owner's signature travels here (ownership.ts). */
  readonly attributes?: Readonly<Record<string, string>>;
  /** The SQS SenderId attribute, where the queue tells it. */
  readonly senderId?: string;
  /** The SQS SentTimestamp (ms), set by the queue: a record counts no earlier than an hour before it (history/record-time.ts). */
  readonly sentAt?: number;
}

export type MessageOutcome =
  | { kind: "applied"; set: string; first: number; last: number; records: number; bytes: number }
  /** Every record was applied before (a redelivery). */
  | { kind: "duplicate"; set: string }
  /** Invalid: nothing written, the reason is in the set status. */
  | { kind: "rejected"; set: string | undefined; error: string }
  /** The first new seq is not the next one, or the target diverged: the set is now out of sync. */
  | { kind: "gap"; set: string; expected: number; got: number }
  /** The set is out of sync and this message does not restart it. */
  | { kind: "held"; set: string }
  /** A marker sent straight to the queue was run (or skipped): its result is under tasks/. */
  | { kind: "marker"; set: string; task: string; status: string };

/** What the applier knows of the Lambda invocation it runs in. */
export interface Invocation {
  /** Milliseconds until the invocation times out. */
  remainingMs(): number;
}

export interface ApplierObserver {
  /** Called after each record reached the store, in apply order. */
  applied?(set: string, record: WireRecord): void;
}

export interface ApplierOptions {
  readonly store: TargetStore;
  readonly observer?: ApplierObserver;
  readonly now?: () => Date;
  /** Where a rejected message is logged (one JSON line); CloudWatch Logs in Lambda. */
  readonly log?: (line: string) => void;
  /** Task markers: the target's switch, the action runners, events. @default enabled, snapshot only */
  readonly tasks?: TaskSettings;
  /** Who may change a set. @default SignedOwnership on the store: only messages signed by the set's owner */
  readonly ownership?: OwnershipCheck;
  /** Namespace of the metrics logged for drill reports. @default DEFAULT_METRICS_NAMESPACE */
  readonly metricsNamespace?: string;
  /** Point-in-time history (tidemark:pointInTimeDays). @default 7 days */
  readonly history?: HistorySettings;
}

/** Content checked before anything is written: decoded inline bytes, or a staging object known to exist. */
type PreparedPut = { record: PutRecord | BlockRecord; bytes: Buffer } | { record: PutRecord | BlockRecord; staged: string; etag?: string };
/** A verification's manifest, parsed before anything is written. */
type PreparedVerify = { record: VerifyRecord; entries: ManifestEntry[]; staged?: string };
type Prepared = PreparedPut | PreparedVerify;

const SYMLINK_MODE = 0o777;

/** Puts of distinct files applied at once: a store's requests overlap instead of queueing one by one. */
const APPLY_CONCURRENCY = 32;

/**
 * The records of a message in the order they must take effect: a run of puts
 * of distinct files is one step (their order does not matter between
 * markers), anything else is a step of its own, so a delete, rename, folder
 * or marker sees everything before it done.
 */
function applySteps(records: readonly WireRecord[]): WireRecord[][] {
  const steps: WireRecord[][] = [];
  let run: WireRecord[] = [];
  let targets = new Set<string>();
  // What a record writes: a file, or a block of the volume (a name no path can take).
  const target = (record: WireRecord) => (record.op === "put" ? record.path : record.op === "block" ? `\0${record.index}` : undefined);
  for (const record of records) {
    const writes = target(record);
    if (writes !== undefined && !targets.has(writes)) {
      run.push(record);
      targets.add(writes);
      continue;
    }
    if (run.length > 0) steps.push(run);
    run = [];
    targets = new Set();
    if (writes !== undefined) {
      run.push(record);
      targets.add(writes);
    } else steps.push([record]);
  }
  if (run.length > 0) steps.push(run);
  return steps;
}

/** The target no longer holds what a record needs (e.g. the source of a rename): only a resync can repair it. */
class TargetDivergedError extends Error {
  override name = "TargetDivergedError";
  readonly seq: number;
  constructor(seq: number, message: string) {
    super(message);
    this.seq = seq;
  }
}

/** The version of a staged object its check saw: the copy takes that one or fails. */
function stagedVersion(put: Prepared): { ifMatch?: string } {
  return "etag" in put && put.etag !== undefined ? { ifMatch: put.etag } : {};
}

function sha256(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export class Applier {
  readonly #store: TargetStore;
  readonly #observer: ApplierObserver;
  readonly #now: () => Date;
  readonly #log: (line: string) => void;
  readonly #tasks: TaskSettings;
  readonly #ownership: OwnershipCheck;
  readonly #metricsNamespace: string | undefined;
  readonly #history: HistorySettings;
  readonly #statusWrites = new StatusSchedule();
  readonly #folders = new DeferredFolders();
  readonly #accepts: AcceptsAnnouncer;
  readonly #historyMemory = new HistoryMemory();
  /** Actions of markers that do not hold the stream (timeout 0), still running. */
  readonly #background = new Set<Promise<unknown>>();

  constructor(options: ApplierOptions) {
    this.#store = options.store;
    this.#accepts = new AcceptsAnnouncer(options.store);
    this.#observer = options.observer ?? {};
    this.#now = options.now ?? (() => new Date());
    this.#log = options.log ?? ((line) => console.error(line));
    this.#tasks = options.tasks ?? {};
    this.#ownership = options.ownership ?? new SignedOwnership(options.store, { now: this.#now });
    this.#metricsNamespace = options.metricsNamespace;
    this.#history = options.history ?? { days: DEFAULT_POINT_IN_TIME_DAYS };
  }

  /**
   * Announces what this applier reads (announce-accepts.ts) now rather than at its first status write: an agent's
   * new sets then send whole packs from their first message (the local cloud announces as it starts).
   */
  announce(): Promise<void> {
    return this.#accepts.announce(this.#now());
  }

  /** Resolves once the actions of markers that did not hold the stream finished: the handler awaits this before its invocation ends. */
  async settle(): Promise<void> {
    while (this.#background.size > 0) await Promise.allSettled([...this.#background]);
  }

  /**
   * Applies one message. Throws only for failures worth retrying (the store); a bad message is recorded, not thrown.
   * `batch`: what the invocation's earlier messages of the set left (batch-memory.ts).
   */
  async applyMessage(incoming: IncomingMessage, invocation?: Invocation, batch?: BatchMemory): Promise<MessageOutcome> {
    let outcome: MessageOutcome;
    try {
      outcome = await this.#applyMessage(incoming, invocation, batch);
    } catch (error) {
      if (incoming.groupId !== undefined) batch?.forget(incoming.groupId);
      throw error;
    }
    // A rejection before the status was read reads and writes it apart from the batch's copy.
    if (outcome.kind === "rejected" && incoming.groupId !== undefined) batch?.forget(incoming.groupId);
    return outcome;
  }

  /**
   * The batch's next message (BatchMemory.following), once this one's content is checked: parsed (once, for its turn
   * too) and its pack's read started (PackReads), while this one writes its files. Nothing is written and nothing is
   * decided here: a message that does not parse is left to its turn.
   */
  #readAhead(batch: BatchMemory): void {
    const next = batch.takeFollowing();
    if (!next) return;
    let message;
    try {
      message = parseMessage(next.body);
    } catch {
      return;
    }
    batch.parsedAhead(next.messageId, next.body, message);
    if (!isMarkerMessage(message)) batch.packs.start(this.#store, message);
  }

  async #applyMessage(incoming: IncomingMessage, invocation: Invocation | undefined, batch: BatchMemory | undefined): Promise<MessageOutcome> {
    let message;
    try {
      message = batch?.takeParsed(incoming.messageId, incoming.body) ?? parseMessage(incoming.body);
      if (incoming.groupId !== message.set) {
        throw new BadMessageError(`message for set "${message.set}" arrived in message group "${incoming.groupId ?? "(none)"}"`);
      }
    } catch (error) {
      if (error instanceof BadMessageError) return this.#rejectUnreadable(incoming, error, batch);
      throw error;
    }
    // The pack is read (and checked against the message) while the set's status and owner are read: a read only,
    // in a batch, whose end settles it if the message never takes it (handler.ts).
    if (batch && !isMarkerMessage(message)) batch.packs.start(this.#store, message);

    const set = message.set;
    const status = batch ? await batch.status(set, () => this.readStatus(set), () => readOwner(this.#store, set)) : await this.readStatus(set);
    const settled = settledFields(status);
    if (isMarkerMessage(message)) {
      // Unsigned, so no owner check; but only the senders the stack allows may insert markers into (and hold) this set's stream.
      const markerRefusal = this.#ownership.checkMarker?.(set, incoming);
      if (markerRefusal) return this.#refuse(incoming, markerRefusal, status);
      return this.#applyMarkerMessage(incoming, message, status, invocation, batch);
    }
    const ownership = await this.#ownership.check(set, incoming, status, batch);
    if (!("accepted" in ownership)) return this.#refuse(incoming, ownership, status);
    // Two writers on the journal: neither is applied, not even a resync (each would take the mirror its own way), until an operator acts.
    if (status.twoWriters) {
      await this.#abandonMarkers(set, message.records.filter((r) => r.seq > status.lastSeq), status);
      return { kind: "held", set };
    }
    let records = message.records;
    const generation = enterGeneration(status, message.gen, records, this.#now());
    if (generation.kind === "stale") return this.#reject(incoming, generation.error, status);
    if (generation.kind === "unannounced") {
      generation.apply();
      return this.#holdSet(set, records, status, generation.reason);
    }
    // A new generation's checkpoint, applied once its records pass their checks.
    const from = generation.kind === "restart" ? generation.lastSeq : status.lastSeq;
    const resyncAt = records.findIndex((r) => r.op === "resync" && r.seq > from);
    if (resyncAt >= 0) {
      // Records before a resync are superseded by the mirror that follows it.
      await this.#abandonMarkers(set, records.slice(0, resyncAt).filter((r) => r.seq > from), status);
      records = records.slice(resyncAt);
    } else if (status.state === "out-of-sync") {
      await this.#abandonMarkers(set, records, status);
      return { kind: "held", set };
    } else {
      const repeated = this.#history.days > 0 ? repeatedRecords(status, records) : [];
      records = records.filter((r) => r.seq > status.lastSeq);
      if (repeated.length > 0) {
        const held = await this.#compareRepeated(incoming, status, repeated, records);
        if (held) return held;
      }
      const first = records[0];
      if (!first) return { kind: "duplicate", set };
      if (first.seq !== status.lastSeq + 1) {
        const expected = status.lastSeq + 1;
        status.state = "out-of-sync";
        status.reason = `seq gap: expected ${expected}, got ${first.seq}; set marked out of sync`;
        await this.#writeStatus(status);
        await this.#abandonMarkers(set, records, status);
        return { kind: "gap", set, expected, got: first.seq };
      }
    }

    let prepared: Map<number, Prepared>;
    const pack = new MessagePackReader(this.#store, message, batch?.packs.take(message));
    try {
      prepared = await this.#prepareContent(set, records, pack);
    } catch (error) {
      if (error instanceof BadMessageError) return this.#reject(incoming, error, status, records[records.length - 1]?.seq, generation.kind === "restart" ? message.gen : undefined);
      throw error;
    }
    if (batch) this.#readAhead(batch);
    generation.apply();
    if (generation.kind === "restart") await this.#abandonMarkers(set, generation.superseded, status);
    // The records passed their checks: the set follows the resync (recorded as applied once the checkpoint passes it).
    const resync = resyncAt >= 0 ? records[0] : undefined;
    if (resync) {
      status.state = "in-sync";
      delete status.reason;
      // The mirror behind the resync writes every folder again.
      delete status.folderWritesLost;
    }
    const history = await this.#openHistory(set, status, records, batch, { sentAt: incoming.sentAt, ownerSince: ownership.ownerSince });
    const superseded = this.#folders.begin(set, records);
    const reapply = new ReapplyGuard(records);

    let bytes = 0;
    let applied = 0;
    let total = 0;
    // Folds what was applied since the last checkpoint into the status.
    const advance = (lastSeq: number) => {
      if (lastSeq !== status.lastSeq) status.appliedAt = this.#now().toISOString();
      if (resync && lastSeq >= resync.seq) status.resynced = { seq: resync.seq, generation: status.generation, at: this.#now().toISOString() };
      status.lastSeq = lastSeq;
      status.appliedRecords += applied;
      status.appliedBytes += bytes;
      total += bytes;
      applied = 0;
      bytes = 0;
    };
    // A volume set's block map, read once per message and written back before each checkpoint.
    let volume: Promise<VolumeMap> | undefined;
    const volumeMap = () => (volume ??= VolumeMap.open(this.#store, set));
    const flushVolume = async (): Promise<VolumeMap | undefined> => {
      const map = await volume;
      await map?.flush();
      // Markers and prunes change the volume's state themselves: read it again after them.
      volume = undefined;
      return map;
    };
    try {
      for (const step of applySteps(records)) {
        // Applied again after a kill, this step could undo a rename or delta before it (reapply.ts): the checkpoint passes them first.
        const first = step[0];
        if (first && reapply.before(step)) {
          advance(first.seq - 1);
          if (history) await history.flush();
          else await this.#writeStatus(status);
          reapply.covered();
        }
        if (step.length === 1 && step[0]?.op !== "put" && step[0]?.op !== "block") await flushVolume();
        if (step.length === 1 && step[0] && readsFolders(step[0])) await this.#folders.flush(this.#store, status);
        if (step.length === 1 && step[0]?.op === "task") {
          const record = step[0];
          // Everything before the marker is applied: checkpoint it, so a retry of the message starts at the marker.
          advance(record.seq - 1);
          await history?.flush();
          await this.#writeStatus(status);
          await this.#runMarker(
            {
              set,
              id: record.id,
              seq: record.seq,
              fields: record,
              ...(record.digest ? { digest: record.digest } : {}),
              ...(record.changingWhileRead ? { changingWhileRead: record.changingWhileRead } : {}),
              ...(record.notReplicated ? { notReplicated: record.notReplicated } : {}),
            },
            status,
            invocation,
          );
          applied += 1;
          history?.applied(record);
          this.#observer.applied?.(set, record);
          continue;
        }
        // Puts of different files are independent: they go to the store at once. Every one settles before the
        // step counts as applied, so a failure leaves no later record half-done behind the checkpoint.
        const outcomes = await mapConcurrent(step, APPLY_CONCURRENCY, (record) =>
          (superseded.has(record.seq) ? Promise.resolve(0) : this.#applyRecord(set, record, prepared.get(record.seq), status, volumeMap, history, reapply)).then(
            (written) => ({ written }),
            (error: unknown) => ({ error }),
          ),
        );
        for (const [i, outcome] of outcomes.entries()) {
          const record = step[i];
          if (!record) continue;
          if ("error" in outcome) throw outcome.error;
          bytes += outcome.written;
          applied += 1;
          reapply.applied(record);
          history?.applied(record);
          this.#observer.applied?.(set, record);
        }
      }
    } catch (error) {
      if (!(error instanceof TargetDivergedError)) throw error;
      await flushVolume();
      advance(error.seq - 1);
      await this.#folders.commit(this.#store, status, true, this.#now().getTime());
      status.state = "out-of-sync";
      status.reason = `${error.message} (seq ${error.seq}); set marked out of sync`;
      await history?.flush();
      await this.#writeStatus(status);
      await this.#abandonMarkers(set, records.filter((r) => r.seq > error.seq), status);
      return { kind: "gap", set, expected: error.seq, got: error.seq };
    }
    const map = await flushVolume();
    // Replaced block content nothing refers to any more goes once there is enough of it.
    // With history on, its retention sweeps (it knows which blocks the window needs).
    if (map?.sweepDue && !history) await pruneSnapshots(this.#store, set, { keep: Number.MAX_SAFE_INTEGER, sweep: true });
    const last = records[records.length - 1]?.seq ?? status.lastSeq;
    advance(last);
    await this.#folders.commit(this.#store, status, history?.checkpointDue() ?? true, this.#now().getTime());
    // Staged payloads are only needed until the checkpoint covers them.
    const removeStaged = async () => {
      const staged = [...prepared.values()].flatMap((content) => ("staged" in content && content.staged !== undefined ? [content.staged] : []));
      if (pack.read && pack.key !== undefined) staged.push(pack.key);
      await mapConcurrent(staged, APPLY_CONCURRENCY, (key) => this.#store.delete(key));
    };
    if (batch && history) {
      // The entries wait for the batch's one segment (batch-segments.ts); a status that changed beyond progress is written now, after them.
      await history.endMessage();
      // A rename applied again after a later record replaced its target finds its source gone (renames.ts), and a delta
      // applied again after a later one changed its file finds another base (a resync for nothing): a message with
      // either gets its segment now, so a kill later in the batch does not apply it again.
      if (records.some((r) => r.op === "rename" || (r.op === "put" && r.delta !== undefined))) await history.flush();
      if (settledFields(status) === settled) batch.segments.after(status, removeStaged);
      else {
        await this.#writeStatus(status);
        await removeStaged();
      }
      return { kind: "applied", set, first: records[0]?.seq ?? last, last, records: records.length, bytes: total };
    }
    await history?.finish();
    // The segment holds the checkpoint: the status itself waits (status-schedule.ts) unless more than progress changed.
    if (this.#statusWrites.mayDefer(status, settled, history?.covers() ?? false, this.#now().getTime())) this.#statusWrites.deferred(status);
    else await this.#writeStatus(status);
    await removeStaged();
    return { kind: "applied", set, first: records[0]?.seq ?? last, last, records: records.length, bytes: total };
  }

  /**
   * Seqs the set applied before, repeated by this message: a redelivery or the agent's resend holds the same changes
   * and is dropped, as it always was. Other changes at them are a second writer on the journal: the set is held and
   * `twoWriters` names it (`fresh`, the message's new records, are not applied). Seqs whose history is gone are
   * dropped too, noted in `duplicateUnchecked`.
   */
  async #compareRepeated(incoming: IncomingMessage, status: SetStatus, repeated: readonly WireRecord[], fresh: readonly WireRecord[]): Promise<MessageOutcome | undefined> {
    // The batch's earlier messages may have applied those seqs: their entries go to the history first.
    await BatchSegments.waitingFor(status)?.flush();
    const verdict = await compareWithHistory(this.#store, status, repeated);
    if (verdict.kind === "same") return undefined;
    const at = this.#now().toISOString();
    if (verdict.kind === "unchecked") {
      status.duplicateUnchecked = { at, messageId: incoming.messageId, first: verdict.first, last: verdict.last, reason: verdict.reason };
      await this.#writeStatus(status);
      return undefined;
    }
    const { seq, applied, received } = verdict;
    const generation = status.generation !== undefined ? { generation: status.generation } : {};
    status.twoWriters = { at, messageId: incoming.messageId, seq, ...generation, applied, received, ...(incoming.senderId ? { sender: incoming.senderId } : {}) };
    status.state = "out-of-sync";
    status.reason = `two writers on one journal: seq ${seq} differs from what was applied (applied: ${applied}; received: ${received}); nothing of message ${incoming.messageId} was applied and the set is held until an operator acts`;
    this.#log(JSON.stringify({ level: "error", msg: "two writers on one journal", messageId: incoming.messageId, set: status.set, seq, applied, received }));
    await this.#writeStatus(status);
    await this.#abandonMarkers(status.set, fresh, status);
    return { kind: "held", set: status.set };
  }

  /** Marks the set out of sync, applying nothing of the message: the agent resyncs. */
  async #holdSet(set: string, records: readonly WireRecord[], status: SetStatus, reason: string): Promise<MessageOutcome> {
    status.state = "out-of-sync";
    status.reason = reason;
    await this.#writeStatus(status);
    await this.#abandonMarkers(set, records, status);
    return { kind: "held", set };
  }

  /** Markers the set's stream will never reach in order (it went out of sync before them): recorded as skipped, so no one waits for them. */
  async #abandonMarkers(set: string, records: readonly WireRecord[], status: SetStatus): Promise<void> {
    for (const record of records) {
      if (record.op !== "task") continue;
      const reason = `set "${set}" went out of sync before the target reached this marker (${status.reason ?? "a resync superseded it"}); the state it marked was not kept`;
      await this.#runMarker({ set, id: record.id, seq: record.seq, fields: record }, status, undefined, reason);
    }
  }

  /** A marker sent straight to the queue: run where the queue put it; the checkpoint does not move. */
  async #applyMarkerMessage(incoming: IncomingMessage, message: MarkerMessage, status: SetStatus, invocation?: Invocation, batch?: BatchMemory): Promise<MessageOutcome> {
    const { id, ...fields } = message.task;
    const marker: Marker = { set: message.set, id: id ?? `sqs-${incoming.messageId}`, seq: null, fields };
    const skip =
      status.state === "out-of-sync"
        ? `set "${message.set}" is out of sync on the target (${status.reason ?? "no reason recorded"}): it does not hold a state of the source to run the action on`
        : undefined;
    // A marker that does not hold the stream (timeout 0) is named nowhere: the set's messages go on at once.
    if (skip === undefined && holdsStream(fields)) {
      // While its action runs, the set's messages wait behind it: `tidemark status` names it from this.
      status.queueMarker = {
        id: marker.id,
        // An action that goes on in the next invocation (MarkerContinuesError) held the stream since its first.
        since: status.queueMarker?.id === marker.id ? status.queueMarker.since : this.#now().toISOString(),
        action: fields.action,
        ...(fields.label !== undefined ? { label: fields.label } : {}),
        timeoutSeconds: fields.timeoutSeconds,
        ...(incoming.senderId ? { sender: incoming.senderId } : {}),
      };
      await this.#writeStatus(status);
    }
    let result: string;
    try {
      result = await this.#runMarker(marker, status, invocation, skip);
    } catch (error) {
      // Still holding the stream when its action goes on in the next invocation; otherwise the retry sets it again.
      if (!(error instanceof MarkerContinuesError)) await this.#queueMarkerEnded(status, marker.id);
      throw error;
    }
    await this.#queueMarkerEnded(status, marker.id);
    // Into the set's history too: `tidemark timeline` lists it.
    await (await this.#openHistory(message.set, status, [], batch))?.recordMarker(marker, status.lastSeq, () => this.#writeStatus(status));
    return { kind: "marker", set: message.set, task: marker.id, status: result };
  }

  /** The queue marker `id` no longer holds the set's stream: its status says so. */
  async #queueMarkerEnded(status: SetStatus, id: string): Promise<void> {
    if (status.queueMarker?.id !== id) return;
    delete status.queueMarker;
    await this.#writeStatus(status);
  }

  /** Runs a marker's action on the set as it is now; a snapshot raises the set's generation before anything after it is applied. */
  async #runMarker(marker: Marker, status: SetStatus, invocation: Invocation | undefined, skip?: string): Promise<string> {
    const outcome = await runMarker(
      {
        store: this.#store,
        settings: this.#tasks,
        now: this.#now,
        log: this.#log,
        snapshot: async (m, signal, saveProgress) => {
          // The snapshot reads the folder objects: every folder write left for later goes first.
          await this.#folders.flush(this.#store, status);
          const request = { id: snapshotIdFor(m.id), taskId: m.id, seq: m.seq, ...(m.fields.label !== undefined ? { label: m.fields.label } : {}) };
          const volume = await VolumeMap.open(this.#store, m.set);
          // A volume's block content is never overwritten: its snapshots need no preservation.
          const checks = { now: this.#now, signal, progress: (s: SnapshotSummary) => saveProgress({ snapshotId: s.id, verified: s.verification?.objects ?? 0 }) };
          if (volume.exists) return checkSnapshot(this.#store, await takeVolumeSnapshot(this.#store, volume, request, this.#now()), m, checks);
          // Before the snapshot exists: from here on, live content older than it is preserved before it is
          // replaced. Nothing is applied meanwhile, so a snapshot that then fails only costs spare copies.
          status.snapshotGen += 1;
          status.snapshotsRetained += 1;
          await this.#writeStatus(status);
          return checkSnapshot(this.#store, await takeSnapshot(this.#store, m.set, request, { now: this.#now(), signal }), m, checks);
        },
        ...(invocation ? { remainingMs: () => invocation.remainingMs() } : {}),
      },
      // An in-stream marker is named by its generation too (task-owner.ts).
      marker.seq !== null && status.generation !== undefined ? { ...marker, generation: status.generation } : marker,
      skip,
    );
    if (outcome.background) {
      const running = outcome.background.finally(() => this.#background.delete(running));
      this.#background.add(running);
    }
    if (outcome.taken) {
      const { id, takenAt, digest, verification, changingWhileRead, notReplicated } = outcome.taken;
      status.lastSnapshot = {
        id,
        takenAt,
        digest: digest?.status ?? "unverified",
        verification: verification?.status ?? "unverified",
        ...(changingWhileRead ? { changingWhileRead: changingWhileRead.count } : {}),
        ...(notReplicated ? { notReplicated: notReplicated.count } : {}),
      };
      await this.#writeStatus(status);
    }
    const days = this.#tasks.retentionDays;
    // A snapshot whose only faults are the source's (files torn as read, entries it does not replicate) is what the
    // target could hold: retention goes on behind it (a busy set snapshotted without --quiesce would otherwise never prune).
    if ((outcome.snapshot || (outcome.taken && onlySourceLimited(outcome.taken))) && days !== undefined && days > 0) {
      const pruned = await pruneSnapshots(this.#store, marker.set, {
        keep: Number.MAX_SAFE_INTEGER,
        olderThan: new Date(this.#now().getTime() - days * 86_400_000),
        ...windowPruneOptions(this.#history, this.#now()),
      });
      status.snapshotsRetained = pruned.kept.length;
      await this.#writeStatus(status);
    }
    return outcome.result.status;
  }

  /**
   * The history recorder of a message, unless history is off: in a batch, the one its earlier messages of the set
   * record in. `times`: when the queue says it was sent, and when its signer was adopted as the set's owner.
   */
  async #openHistory(set: string, status: SetStatus, records: readonly WireRecord[], batch?: BatchMemory, times: { sentAt?: number | undefined; ownerSince?: number | undefined } = {}): Promise<HistoryRecorder | undefined> {
    if (this.#history.days <= 0) return undefined;
    const open = batch?.segments.recorder(status);
    if (open) return open.sent(times.sentAt, times.ownerSince);
    const recorder = await HistoryRecorder.open(this.#store, set, status, this.#history, { now: this.#now, records, memory: this.#historyMemory, persist: () => this.#writeStatus(status), ...times });
    batch?.segments.opened(status, recorder);
    return recorder;
  }

  /**
   * Ends a batch (handler.ts): each set's history segment, then its status
   * when due, then the staged payloads it covers are removed. Resolves with
   * the sets whose writes failed: all their messages must come back.
   */
  async finishBatch(batch: BatchMemory): Promise<Set<string>> {
    const failed = await batch.segments.finish(async (status, recorder) => {
      recorder.finished();
      // Compared with what the batch read: a change no message of it wrote is written now.
      const settled = batch.settledAtStart(status.set);
      if (settled !== undefined && this.#statusWrites.mayDefer(status, settled, recorder.covers(), this.#now().getTime())) this.#statusWrites.deferred(status);
      else await this.#writeStatus(status);
    });
    for (const [set, error] of failed) {
      this.#log(JSON.stringify({ level: "error", msg: "history segment or status of the batch not written: its messages come back", set, error: String(error) }));
    }
    return new Set(failed.keys());
  }

  /** The applier's checkpoint and status for a set (the initial one when the set was never seen). */
  async readStatus(set: string): Promise<SetStatus> {
    const stored = await readStoredStatus(this.#store, set);
    // Segments this applier wrote after its own last status write need no reading again: it knows what they hold.
    const known = this.#statusWrites.known(set, stored?.text);
    const status = await foldSegments(this.#store, known ?? structuredClone(stored?.status) ?? initialStatus(set));
    // Not its own status: folder writes another writer (or this one, before a crash) left for later are in the segments.
    if (!known) await this.#folders.recover(this.#store, stored?.status, status, this.#now());
    return status;
  }

  /**
   * Checks every put's content and parses every verify manifest before anything is written, so a bad message writes
   * nothing. Staged objects are read several at a time (checkInOrder); a failure is reported for the first bad record.
   */
  async #prepareContent(set: string, records: readonly WireRecord[], pack: MessagePackReader): Promise<Map<number, Prepared>> {
    const checks: (() => Promise<[number, Prepared] | undefined>)[] = records.map((record) => async () => {
      if (record.op === "verify") {
        const { bytes, staged } = await this.#loadManifest(set, record);
        return [record.seq, { record, entries: parseManifest(bytes), ...(staged ? { staged } : {}) }];
      }
      if (record.op === "block") {
        if (record.content.kind === "zero") return undefined;
        return [record.seq, await this.#prepareBlock(set, record, record.content)];
      }
      if (record.op !== "put") return undefined;
      // A delta carries only its blocks; a whole put carries the file.
      const expected = record.delta ? deltaBytes(record.size, record.delta) : record.size;
      if (record.content.kind === "inline" || record.content.kind === "packed") {
        const bytes = record.content.kind === "inline" ? decodeInline(record.content) : await pack.bytesOf(record.content, `${record.path} (seq ${record.seq})`);
        if (bytes.length !== expected || (!record.delta && sha256(bytes) !== record.sha256)) {
          throw new BadMessageError(`content of ${record.path} (seq ${record.seq}) does not match its size and sha256`);
        }
        return [record.seq, { record, bytes }];
      }
      // A delta's staged blocks have no hash of their own: the file rebuilt from them is checked against its sha256.
      const key = stagingKey(set, record.seq, record.sha256);
      return [record.seq, record.delta ? await this.#prepareStagedDelta(key, record, expected) : await checkStaged(this.#store, key, record, `${record.path} (seq ${record.seq})`, expected)];
    });
    const prepared = new Map<number, Prepared>();
    for (const entry of await checkInOrder(checks)) if (entry) prepared.set(entry[0], entry[1]);
    return prepared;
  }

  async #prepareBlock(set: string, record: BlockRecord, content: Exclude<BlockRecord["content"], { kind: "zero" }>): Promise<PreparedPut> {
    const expected = blockLength(record.volumeSize, record.index);
    if (content.kind === "inline") {
      const bytes = decodeInline(content);
      if (bytes.length !== expected || sha256(bytes) !== record.sha256) {
        throw new BadMessageError(`content of block ${record.index} (seq ${record.seq}) does not match its size and sha256`);
      }
      return { record, bytes };
    }
    return checkStaged(this.#store, stagingKey(set, record.seq, record.sha256), record, `block ${record.index} (seq ${record.seq})`, expected);
  }

  async #prepareStagedDelta(key: string, record: PutRecord, expected: number): Promise<PreparedPut> {
    const head = await this.#store.head(key);
    if (!head) throw new BadMessageError(`staged content of ${record.path} (seq ${record.seq}) is missing at ${key}`);
    if (head.size !== expected) throw new BadMessageError(`staged content of ${record.path} (seq ${record.seq}) is ${head.size} bytes, expected ${expected}`);
    return { record, staged: key };
  }

  async #loadManifest(set: string, record: VerifyRecord): Promise<{ bytes: Buffer; staged?: string }> {
    let bytes: Buffer;
    let staged: string | undefined;
    if (record.content.kind === "inline") bytes = decodeInline(record.content);
    else {
      staged = stagingKey(set, record.seq, record.sha256);
      const object = await this.#store.get(staged);
      if (!object) throw new BadMessageError(`verify manifest (seq ${record.seq}) is missing at ${staged}`);
      bytes = object.body;
    }
    if (bytes.length !== record.size || sha256(bytes) !== record.sha256) {
      throw new BadMessageError(`verify manifest (seq ${record.seq}) does not match its size and sha256`);
    }
    return staged ? { bytes, staged } : { bytes };
  }

  /** Applies one record; returns the content bytes it wrote. */
  async #applyRecord(
    set: string,
    record: WireRecord,
    put: Prepared | undefined,
    status: SetStatus,
    volume: () => Promise<VolumeMap>,
    history: HistoryRecorder | undefined,
    reapply: ReapplyGuard,
  ): Promise<number> {
    const gen = status.snapshotGen;
    const preserve = (key: string) => (history ? history.preserve(key) : preserveBeforeReplace(this.#store, set, key, status));
    // The history's entry names the version a write made (versioned buckets).
    const written = async (key: string, write: Promise<WriteResult>) => {
      const result = await write;
      await history?.written(key, result);
    };
    switch (record.op) {
      case "put": {
        const meta = {
          ...encodeMeta({ kind: "file", mode: record.mode, mtimeNs: record.mtimeNs, sha256: record.sha256, gen, ...(record.linkGroup ? { linkGroup: record.linkGroup } : {}) }),
          ...writeStamp(status.generation, record.seq),
        };
        if (!put) throw new Error(`internal: put seq ${record.seq} was not prepared`);
        const key = dataKey(set, record.path);
        await preserve(key);
        if (record.delta) {
          const { delta } = record;
          const carried = deltaBytes(record.size, delta);
          if (carried === 0 && delta.base === record.sha256) {
            // Same bytes, new mode or mtime: a server-side copy onto itself replaces the metadata, only when the live
            // object is the content the record names (its SHA-256 stamped by a write that proved it, and its size):
            // otherwise the live object's sha256 would name bytes it does not hold, and history would preserve them
            // under that content's hash.
            const head = await this.#store.head(key);
            if (!head) throw new TargetDivergedError(record.seq, `delta base of ${record.path} is missing on the target`);
            if (head.meta[META.sha256] !== delta.base || head.size !== record.size) {
              if (await reapply.supersededDelta(this.#store, key, record, status.generation)) return carried;
              throw new TargetDivergedError(record.seq, `delta base of ${record.path} is not the content the agent changed (the target holds ${head.meta[META.sha256] ?? "no SHA-256"}, ${head.size} bytes)`);
            }
            await written(key, this.#store.copy(key, key, meta));
          } else {
            const content = "bytes" in put ? { bytes: put.bytes } : "staged" in put && put.staged ? { staged: put.staged } : undefined;
            if (!content) throw new Error(`internal: delta seq ${record.seq} was not prepared`);
            let result: WriteResult;
            try {
              result = await applyDelta(this.#store, key, { ...record, delta }, content, meta);
            } catch (error) {
              if (!(error instanceof DeltaBaseError)) throw error;
              // Applied before this delivery, and a later put of the message already changed the file again.
              if (await reapply.supersededDelta(this.#store, key, record, status.generation)) return carried;
              throw new TargetDivergedError(record.seq, error.message);
            }
            await written(key, Promise.resolve(result));
          }
          return carried;
        }
        // The bytes were checked against the record's sha256 (#prepareContent): the store sends that as their checksum.
        if ("bytes" in put) await written(key, this.#store.put(key, put.bytes, meta, { sha256: record.sha256 }));
        else if ("staged" in put && put.staged) await written(key, this.#store.copy(put.staged, key, meta, stagedVersion(put)));
        return record.size;
      }
      case "mkdir":
        // The segment records it: the folder object is written later, before anything reads it (folder-writes.ts).
        if (history) {
          this.#folders.defer(set, record.path, { mode: record.mode, mtimeNs: record.mtimeNs }, history.nextSegment);
          return 0;
        }
        await this.#store.put(dirKey(set, record.path), new Uint8Array(), encodeMeta({ kind: "dir", mode: record.mode, mtimeNs: record.mtimeNs, gen }));
        return 0;
      case "symlink": {
        const meta = encodeMeta({
          kind: "symlink",
          mode: SYMLINK_MODE,
          mtimeNs: record.mtimeNs,
          sha256: sha256(record.target),
          linkTarget: record.target,
          gen,
        });
        await preserve(dataKey(set, record.path));
        await this.#store.put(dataKey(set, record.path), Buffer.from(record.target, "utf8"), meta);
        return 0;
      }
      case "delete":
        await preserve(dataKey(set, record.path));
        await this.#store.delete(dataKey(set, record.path));
        await this.#store.delete(dirKey(set, record.path));
        return 0;
      case "rename": {
        const from = dataKey(set, record.from);
        const object = await this.#store.head(from);
        const to = dataKey(set, record.to);
        const before = await renamedBefore(this.#store, to, status.generation, record, object);
        if (before) {
          // Applied before this delivery: only the source's removal may be left to do, and the history names the version moved then.
          await written(to, Promise.resolve(before));
          if (object) await preserve(from);
          await this.#store.delete(from);
          return 0;
        }
        if (!object) throw new TargetDivergedError(record.seq, `rename source ${record.from} is missing on the target`);
        await preserve(from);
        await preserve(to);
        await written(to, this.#store.copy(from, to, withinMetadataLimit({ ...object.meta, ...(gen > 0 ? { [META.gen]: String(gen) } : {}), ...renameStamps(status.generation, record, object.meta) })));
        await this.#store.delete(from);
        return 0;
      }
      case "block": {
        const map = await volume();
        if (record.content.kind === "zero") {
          await map.write(record.index, null, record.volumeSize);
          return 0;
        }
        if (!put || "entries" in put) throw new Error(`internal: block seq ${record.seq} was not prepared`);
        // Content is stored once per hash and never overwritten: snapshots that name it stay restorable.
        const key = blockDataKey(set, record.sha256);
        if ("bytes" in put) await this.#store.put(key, put.bytes, {}, { sha256: record.sha256 });
        else await this.#store.copy(put.staged, key, {}, stagedVersion(put));
        await map.write(record.index, record.sha256, record.volumeSize);
        return blockLength(record.volumeSize, record.index);
      }
      case "resync": {
        // What follows is a mirror of the source: a volume's blocks start again from zeros.
        const map = await volume();
        if (map.exists) await map.clear();
        return 0;
      }
      case "skip":
        return 0;
      case "task":
        throw new Error(`internal: task seq ${record.seq} reached #applyRecord`);
      case "prune": {
        const pruned = await pruneSnapshots(this.#store, set, { keep: record.keep, sweep: true, ...windowPruneOptions(this.#history, this.#now()) });
        status.snapshotsRetained = pruned.kept.length;
        const window = this.#history.days > 0 ? { windowDays: this.#history.days } : {};
        const report: PruneReport = { id: record.id, set, keep: record.keep, at: this.#now().toISOString(), ...pruned, ...window };
        await this.#store.put(pruneReportKey(set, record.id), Buffer.from(JSON.stringify(report, null, 2)), {});
        return 0;
      }
      case "verify": {
        if (!put || !("entries" in put)) throw new Error(`internal: verify seq ${record.seq} was not prepared`);
        const report = await verifyTarget(this.#store, set, record, put.entries, this.#now(), history ? (key) => history.removing(key, record) : preserve);
        await this.#store.put(verifyReportKey(set, record.id), Buffer.from(JSON.stringify(report)), {});
        return 0;
      }
      case "drill": {
        // The set is the stream's, whatever the report claims; a report once written is never replaced.
        const report = { ...record.report, set };
        const key = drillReportKey(set, report.id);
        if (await this.#store.head(key)) return 0;
        await this.#store.put(key, Buffer.from(JSON.stringify(report, null, 2)), {});
        this.#log(drillMetricsLine(report, this.#now().getTime(), this.#metricsNamespace));
        return 0;
      }
    }
  }

  /** `seq`: the message's last seq record, when it carried records of the set's current generation (or of `generation`, a new one it did not enter). */
  async #reject(incoming: IncomingMessage, error: BadMessageError, known?: SetStatus, seq?: number, generation?: string): Promise<MessageOutcome> {
    const set = incoming.groupId !== undefined && !setNameProblem(incoming.groupId) ? incoming.groupId : undefined;
    this.#log(JSON.stringify({ level: "error", msg: "message rejected", messageId: incoming.messageId, set, error: error.message }));
    if (set !== undefined) {
      const status = known ?? (await this.readStatus(set));
      status.lastRejected = { at: this.#now().toISOString(), messageId: incoming.messageId, error: error.message, ...(seq !== undefined ? { seq, generation: generation ?? status.generation } : {}) };
      await this.#writeStatus(status);
    }
    return { kind: "rejected", set, error: error.message };
  }

  /**
   * A message that could not be read: the set's own rejection (`lastRejected`, `rejected-message` in status) only
   * when it carries the owner's signature; anyone else's is a refusal naming its sender (`refused-sender`), as
   * nothing of the owner's was lost.
   */
  async #rejectUnreadable(incoming: IncomingMessage, error: BadMessageError, batch: BatchMemory | undefined): Promise<MessageOutcome> {
    const set = incoming.groupId !== undefined && !setNameProblem(incoming.groupId) ? incoming.groupId : undefined;
    // The batch's copy of the set, when it holds one: its waiting history is written before the rejection.
    const known = set !== undefined ? batch?.held(set) : undefined;
    const status = set !== undefined ? (known ?? (await this.readStatus(set))) : undefined;
    const refusal = set !== undefined ? await this.#ownership.unreadable?.(set, incoming, error.message, batch, (status?.lastSeq ?? 0) > 0) : undefined;
    if (set === undefined || status === undefined || refusal === undefined) return this.#reject(incoming, error, status ?? known);
    return this.#refuse(incoming, refusal, status);
  }

  /** A message not from the set's owner: recorded with who sent it; the checkpoint and the sync state stay as they are. */
  async #refuse(incoming: IncomingMessage, refusal: Refusal, status: SetStatus): Promise<MessageOutcome> {
    this.#log(JSON.stringify({ level: "error", msg: "message refused", messageId: incoming.messageId, set: status.set, ...refusal }));
    status.refused = withRefusal(status.refused, { at: this.#now().toISOString(), messageId: incoming.messageId, ...refusal });
    await this.#writeStatus(status);
    return { kind: "rejected", set: status.set, error: refusal.reason };
  }

  async #writeStatus(status: SetStatus): Promise<void> {
    // The checkpoint never covers a record whose history is not durable.
    await BatchSegments.waitingFor(status)?.flush();
    const now = this.#now();
    status.updatedAt = now.toISOString();
    const announced = this.#accepts.stamp(status, now, this.#log);
    this.#folders.note(status);
    const text = JSON.stringify(status, null, 2);
    await Promise.all([this.#store.put(statusKey(status.set), Buffer.from(text), {}), announced]);
    this.#statusWrites.wrote(status, text, now.getTime());
  }
}
