// The `ebs-snapshot` action (DESIGN 3): an incremental EBS snapshot of a
// volume set cut from the block snapshot taken at the marker, through the EBS
// direct APIs. Only the blocks that differ from the previous EBS snapshot's
// state are uploaded; the previous snapshot is the new one's parent. The
// upload resumes across invocations: progress is saved in the task result,
// and StartSnapshot's client token gives a resumed upload the same snapshot.
// With a snapshot lock set, each completed snapshot is locked (snapshot-lock.ts).

import { createHash } from "node:crypto";
import { CompleteSnapshotCommand, PutSnapshotBlockCommand, StartSnapshotCommand, type EBSClient } from "@aws-sdk/client-ebs";
import { snapshotSummaryKey } from "../../contract/layout.ts";
import type { SnapshotSummary, VolumeBlockEntry } from "../../contract/tasks.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { mapConcurrent } from "../../contract/async.ts";
import type { TargetStore } from "../store/store.ts";
import { ActionFailedError, type ActionRequest, type ActionRunner } from "../tasks/actions.ts";
import { readBlockManifest, readSnapshot } from "../tasks/snapshots.ts";
import { VolumeMap } from "./block-map.ts";
import { Ec2SnapshotLocks, type SnapshotLockRecord, type SnapshotLockSettings } from "./snapshot-lock.ts";
import { readBlock } from "./volume-snapshots.ts";

const GIB = 1024 ** 3;
/** Blocks uploaded at once. */
const PUT_CONCURRENCY = 8;
/** Progress is saved at least this often: a Lambda killed mid-upload redoes at most this much. */
const PROGRESS_EVERY_MS = 5_000;
/** Minutes EBS keeps a snapshot pending before it errors it out: long enough for many resumed invocations. */
const PENDING_TIMEOUT_MINUTES = 4320;

export interface EbsSnapshotSettings {
  /** KMS key the snapshots are encrypted with; the account's EBS encryption default when absent. */
  readonly kmsKeyArn?: string;
  /** Lock each completed snapshot for this many days from its completion (EC2 LockSnapshot); none when absent. */
  readonly lock?: SnapshotLockSettings;
}

const DAY_MS = 86_400_000;

/** What a resumed upload takes over from the attempt before it (kept in the task result's outputs). */
interface UploadProgress {
  readonly ebsSnapshotId: string;
  /** Changed blocks uploaded, in index order: the next attempt starts after them. */
  readonly uploadedBlocks: number;
}

function progressFrom(outputs: Record<string, unknown> | undefined): UploadProgress | undefined {
  const id = outputs?.ebsSnapshotId;
  const uploaded = outputs?.uploadedBlocks;
  return typeof id === "string" && typeof uploaded === "number" && Number.isInteger(uploaded) ? { ebsSnapshotId: id, uploadedBlocks: uploaded } : undefined;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest();
const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
const ZERO_BLOCK_SHA256 = sha256(ZERO_BLOCK);

/** A changed block: its content in the new state, or zeros. */
interface ChangedBlock {
  readonly index: number;
  readonly entry?: VolumeBlockEntry;
}

/** Blocks whose content differs between the parent's state and the new one; without a parent, every block holding data. */
function blocksToUpload(current: readonly VolumeBlockEntry[], parent: readonly VolumeBlockEntry[] | undefined): ChangedBlock[] {
  const now = new Map(current.map((e) => [e.index, e]));
  if (!parent) return current.map((entry) => ({ index: entry.index, entry }));
  const before = new Map(parent.map((e) => [e.index, e.sha256]));
  const changed: ChangedBlock[] = [];
  for (const index of new Set([...now.keys(), ...before.keys()])) {
    const entry = now.get(index);
    // Absent on one side means zeros there; a block that became zeros is written as zeros.
    if (entry?.sha256 === before.get(index)) continue;
    changed.push(entry ? { index, entry } : { index });
  }
  return changed.sort((a, b) => a.index - b.index);
}

/** The idempotency token of a task's EBS snapshot: a resumed upload continues the same snapshot. */
function clientToken(set: string, taskId: string): string {
  return createHash("sha256").update(`${set}/${taskId}`).digest("hex").slice(0, 64);
}

export class EbsSnapshotAction implements ActionRunner {
  readonly #ebs: EBSClient;
  readonly #store: TargetStore;
  readonly #settings: EbsSnapshotSettings;
  readonly #locks: Ec2SnapshotLocks | undefined;

  constructor(ebs: EBSClient, store: TargetStore, settings: EbsSnapshotSettings = {}) {
    this.#ebs = ebs;
    this.#store = store;
    this.#settings = settings;
    this.#locks = settings.lock ? new Ec2SnapshotLocks(ebs) : undefined;
  }

  /**
   * Locks a completed snapshot until `days` after its completion: the same
   * expiration each time, so locking it again (a retried marker) neither
   * shortens nor stretches a lock already there.
   */
  async #lock(snapshotId: string, completedAt: Date): Promise<{ lock: SnapshotLockRecord } | Record<string, never>> {
    const settings = this.#settings.lock;
    if (!settings || !this.#locks) return {};
    try {
      return { lock: await this.#locks.lock(snapshotId, settings.mode, new Date(completedAt.getTime() + settings.days * DAY_MS)) };
    } catch (error) {
      const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new ActionFailedError(`EBS snapshot ${snapshotId} is complete but not locked (${settings.mode}, ${settings.days} days): ${why}`);
    }
  }

  /** The block (padded to BLOCK_SIZE) EBS gets for a changed block. */
  async #blockData(set: string, block: ChangedBlock): Promise<Buffer> {
    if (!block.entry) return ZERO_BLOCK;
    const bytes = await readBlock(this.#store, set, block.entry);
    if (bytes.length === BLOCK_SIZE) return bytes;
    const padded = Buffer.alloc(BLOCK_SIZE);
    bytes.copy(padded);
    return padded;
  }

  /** The block's SHA-256 as EBS computes it, without reading it when the manifest already tells. */
  async #blockChecksum(set: string, block: ChangedBlock): Promise<Buffer> {
    if (!block.entry) return ZERO_BLOCK_SHA256;
    if (block.entry.size === BLOCK_SIZE) return Buffer.from(block.entry.sha256, "hex");
    return sha256(await this.#blockData(set, block));
  }

  async run({ context, signal, previous, saveProgress }: ActionRequest): Promise<Record<string, unknown>> {
    const { set, taskId } = context;
    if (!context.snapshotId) throw new Error("internal: an ebs-snapshot marker reached its action without a block snapshot");
    const summary = await readSnapshot(this.#store, set, context.snapshotId);
    if (!summary.volume) throw new ActionFailedError(`set "${set}" is a file set: ebs-snapshot needs a volume set (type "volume" in the agent's config)`);
    const map = await VolumeMap.open(this.#store, set);
    const done = map.state.ebs;
    if (done?.manifestSnapshotId === summary.id) {
      // Completed by an attempt whose result was not written: report it again (locked, as that attempt may not have got to it).
      return { snapshotId: summary.id, ebsSnapshotId: done.snapshotId, volumeSizeGiB: done.volumeSizeGiB, ...(await this.#lock(done.snapshotId, new Date(done.completedAt))) };
    }
    const parent = await this.#parent(map);
    const current = await readBlockManifest(this.#store, summary);
    const changed = blocksToUpload(current, parent?.entries);
    const volumeSizeGiB = Math.max(1, Math.ceil(summary.volume.size / GIB), parent?.volumeSizeGiB ?? 1);

    let progress = progressFrom(previous);
    if (!progress) {
      const started = await this.#ebs.send(
        new StartSnapshotCommand({
          VolumeSize: volumeSizeGiB,
          ...(parent ? { ParentSnapshotId: parent.snapshotId } : {}),
          ClientToken: clientToken(set, taskId),
          Description: `tidemark ${set} at task ${taskId}${context.label ? ` (${context.label})` : ""}`.slice(0, 255),
          Tags: [
            { Key: "tidemark:set", Value: set },
            { Key: "tidemark:task", Value: taskId },
            ...(context.label ? [{ Key: "tidemark:label", Value: context.label.slice(0, 256) }] : []),
          ],
          // A child inherits its parent's encryption: EBS refuses Encrypted beside ParentSnapshotId.
          ...(parent || !this.#settings.kmsKeyArn ? {} : { Encrypted: true, KmsKeyArn: this.#settings.kmsKeyArn }),
          Timeout: PENDING_TIMEOUT_MINUTES,
        }),
        { abortSignal: signal },
      );
      if (!started.SnapshotId) throw new ActionFailedError("StartSnapshot answered without a snapshot id");
      progress = { ebsSnapshotId: started.SnapshotId, uploadedBlocks: 0 };
      await saveProgress({ ...progress, changedBlocks: changed.length });
    }

    const snapshotId = progress.ebsSnapshotId;
    let uploaded = progress.uploadedBlocks;
    let savedAt = Date.now();
    while (uploaded < changed.length) {
      // Stops between rounds: what is uploaded is saved, and the next invocation goes on from there.
      if (signal.aborted) {
        await saveProgress({ ebsSnapshotId: snapshotId, uploadedBlocks: uploaded, changedBlocks: changed.length });
        signal.throwIfAborted();
      }
      const round = changed.slice(uploaded, uploaded + PUT_CONCURRENCY * 4);
      await mapConcurrent(round, PUT_CONCURRENCY, async (block) => {
        const data = await this.#blockData(set, block);
        await this.#ebs.send(
          new PutSnapshotBlockCommand({
            SnapshotId: snapshotId,
            BlockIndex: block.index,
            BlockData: data,
            DataLength: BLOCK_SIZE,
            Checksum: sha256(data).toString("base64"),
            ChecksumAlgorithm: "SHA256",
          }),
        );
      });
      uploaded += round.length;
      if (Date.now() - savedAt >= PROGRESS_EVERY_MS) {
        await saveProgress({ ebsSnapshotId: snapshotId, uploadedBlocks: uploaded, changedBlocks: changed.length });
        savedAt = Date.now();
      }
    }

    // LINEAR: the SHA-256 of the blocks' SHA-256 digests, in block order.
    const digests: Buffer[] = [];
    for (const block of changed) digests.push(await this.#blockChecksum(set, block));
    const completed = await this.#ebs.send(
      new CompleteSnapshotCommand({
        SnapshotId: snapshotId,
        ChangedBlocksCount: changed.length,
        Checksum: sha256(Buffer.concat(digests)).toString("base64"),
        ChecksumAlgorithm: "SHA256",
        ChecksumAggregationMethod: "LINEAR",
      }),
    );
    const completedAt = new Date();
    map.setEbs({ snapshotId, manifestSnapshotId: summary.id, volumeSizeGiB, taskId, completedAt: completedAt.toISOString() });
    await map.flush();
    await this.#store.put(
      snapshotSummaryKey(set, summary.id),
      Buffer.from(JSON.stringify({ ...summary, volume: { ...summary.volume, ebsSnapshotId: snapshotId } } satisfies SnapshotSummary, null, 2)),
      {},
    );
    // After the snapshot is recorded as the next one's parent: a lock that fails fails the task, not the chain.
    const lock = await this.#lock(snapshotId, completedAt);
    return {
      snapshotId: summary.id,
      ebsSnapshotId: snapshotId,
      ...(parent ? { parentSnapshotId: parent.snapshotId } : {}),
      volumeSizeGiB,
      changedBlocks: changed.length,
      uploadedBlocks: changed.length,
      ebsStatus: completed.Status ?? "unknown",
      ...lock,
    };
  }

  /** The previous EBS snapshot and the blocks it holds, when both are still known (else the new snapshot is a full one). */
  async #parent(map: VolumeMap): Promise<{ snapshotId: string; volumeSizeGiB: number; entries: VolumeBlockEntry[] } | undefined> {
    const ebs = map.state.ebs;
    if (!ebs) return undefined;
    try {
      const entries = await readBlockManifest(this.#store, await readSnapshot(this.#store, map.set, ebs.manifestSnapshotId));
      return { snapshotId: ebs.snapshotId, volumeSizeGiB: ebs.volumeSizeGiB, entries };
    } catch {
      return undefined;
    }
  }
}
