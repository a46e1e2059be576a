// The checks of a marker's snapshot (DESIGN 8b): its manifest against the
// digest the marker carried (what the source held at the barrier), then its
// content (verify-snapshot.ts). Both are recorded in the snapshot's summary;
// either failing fails the marker's task, naming the paths.

import { createHash } from "node:crypto";
import { digestDifferences, fileSetDigest, sameDigest, volumeDigest, type SetDigest } from "../../contract/digest.ts";
import { snapshotSummaryKey, stagingKey } from "../../contract/layout.ts";
import { setPathProblem } from "../../contract/paths.ts";
import { boundChangingWhileRead, boundNotReplicated, MAX_NAMED_PATHS, type ChangingWhileRead, type NotReplicatedAtMarker, type SnapshotDigestCheck, type SnapshotSummary, type SnapshotVerification } from "../../contract/tasks.ts";
import { BadMessageError, decodeInline, type MarkerDigest } from "../../contract/wire.ts";
import { parseManifest } from "../applier/verify.ts";
import type { TargetStore } from "../store/store.ts";
import { readBlockManifest, readManifest } from "./snapshots.ts";
import { verifySnapshot } from "./verify-snapshot.ts";

/** The marker a snapshot was taken at, as far as its checks need it. */
export interface CheckedMarker {
  readonly set: string;
  readonly seq: number | null;
  readonly digest?: MarkerDigest;
  readonly changingWhileRead?: ChangingWhileRead;
  readonly notReplicated?: NotReplicatedAtMarker;
}

export interface SnapshotCheckOptions {
  readonly now: () => Date;
  readonly signal?: AbortSignal;
  /** Told each time the verification saved its progress (the marker's result records the attempt that moved it on). */
  readonly progress?: (summary: SnapshotSummary) => Promise<void>;
}

const sha256Of = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

async function saveSummary(store: TargetStore, summary: SnapshotSummary): Promise<void> {
  await store.put(snapshotSummaryKey(summary.set, summary.id), Buffer.from(JSON.stringify(summary, null, 2)), {});
}

/** The marker's list of the source's entries (inline or staged); undefined, with why, when it cannot be read. */
async function sourceList(store: TargetStore, marker: CheckedMarker, list: NonNullable<MarkerDigest["list"]>): Promise<{ bytes: Buffer; staged?: string } | { missing: string }> {
  let bytes: Buffer;
  let staged: string | undefined;
  if (list.content.kind === "inline") bytes = decodeInline(list.content);
  else {
    staged = stagingKey(marker.set, marker.seq ?? 0, list.sha256);
    const object = await store.get(staged);
    if (!object) return { missing: `the marker's list of the source's entries is missing at ${staged}` };
    bytes = object.body;
  }
  if (bytes.length !== list.size || sha256Of(bytes) !== list.sha256) return { missing: "the marker's list of the source's entries does not match its size and sha256" };
  return staged !== undefined ? { bytes, staged } : { bytes };
}

/** The snapshot's manifest against the marker's digest. */
export async function checkDigest(store: TargetStore, summary: SnapshotSummary, marker: CheckedMarker): Promise<SnapshotDigestCheck> {
  const entries = summary.volume ? undefined : await readManifest(store, summary);
  const target: SetDigest = summary.volume ? volumeDigest(summary.volume.size, await readBlockManifest(store, summary)) : fileSetDigest(entries ?? []);
  if (!marker.digest) {
    const reason =
      marker.seq === null
        ? "the marker was sent straight to the queue: no barrier scan saw the source, so there is no digest to check the snapshot against"
        : "the marker carried no digest (an agent older than digests journaled it)";
    return { status: "unverified", reason, target };
  }
  const { list, ...source } = marker.digest;
  if (sameDigest(source, target)) {
    if (list?.content.kind === "staged") await store.delete(stagingKey(marker.set, marker.seq ?? 0, list.sha256));
    return { status: "matched", source, target };
  }
  const counts = `the source held ${source.entries} entries (${source.files} files, ${source.bytes} bytes), the snapshot has ${target.entries} (${target.files} files, ${target.bytes} bytes)`;
  if (summary.volume) {
    const size = source.volumeSize !== target.volumeSize ? `; the volume is ${source.volumeSize ?? "?"} bytes on the source, ${target.volumeSize ?? "?"} on the target` : "";
    return { status: "mismatch", reason: `the block map differs from the source's: ${counts.replace(/entries/g, "blocks")}${size}`, source, target };
  }
  if (!list) return { status: "mismatch", reason: `${counts}; the marker carried no list to name the paths`, source, target };
  const read = await sourceList(store, marker, list);
  if ("missing" in read) return { status: "mismatch", reason: `${counts}; ${read.missing}`, source, target };
  let differences;
  try {
    differences = digestDifferences(parseManifest(read.bytes), entries ?? []);
  } catch (error) {
    if (!(error instanceof BadMessageError)) throw error;
    return { status: "mismatch", reason: `${counts}; the marker's list does not parse: ${error.message}`, source, target };
  }
  if (read.staged !== undefined) await store.delete(read.staged);
  return { status: "mismatch", reason: counts, source, target, differences: differences.slice(0, MAX_NAMED_PATHS), differenceCount: differences.length };
}

/**
 * Checks a snapshot just taken at a marker: its digest (once), then its
 * content (going on from saved progress). Resolves with the summary as saved;
 * rejects with the signal's reason, progress saved, when the signal aborts.
 */
export async function checkSnapshot(store: TargetStore, taken: SnapshotSummary, marker: CheckedMarker, options: SnapshotCheckOptions): Promise<SnapshotSummary> {
  let summary = taken;
  if (!summary.digest) {
    // Recorded with the digest, once: the snapshot holds those files as its barrier read them.
    const changing = boundedBySource(marker.changingWhileRead);
    const notReplicated = notReplicatedBySource(marker.notReplicated);
    summary = { ...summary, digest: await checkDigest(store, summary, marker), ...(changing ? { changingWhileRead: changing } : {}), ...(notReplicated ? { notReplicated } : {}) };
    await saveSummary(store, summary);
  }
  if (summary.verification && summary.verification.status !== "pending") return summary;
  const verification = await verifySnapshot(store, summary, {
    now: options.now,
    ...(options.signal ? { signal: options.signal } : {}),
    save: async (pending: SnapshotVerification) => {
      summary = { ...summary, verification: pending };
      await saveSummary(store, summary);
      await options.progress?.(summary);
    },
  });
  summary = { ...summary, verification };
  await saveSummary(store, summary);
  return summary;
}

/** A name the source host sent is cut to this many characters where it is kept (the agent sends paths of the set). */
const MAX_CHANGING_NAME = 1024;

/**
 * The source host's list of files that kept changing, bounded again here: the host is not trusted to have bounded it,
 * nor to send set paths (a name with a control character, a terminal escape, would reach the task's problem text and
 * every reader of it): such a name is left out, and still counted.
 */
export function boundedBySource(changing: ChangingWhileRead | undefined): ChangingWhileRead | undefined {
  if (!changing) return undefined;
  const named = changing.paths.map((path) => path.slice(0, MAX_CHANGING_NAME)).filter((path) => setPathProblem(path) === undefined);
  // Torn however few names are left: the count says so (the schema holds it at 1 or more).
  return { paths: boundChangingWhileRead(named)?.paths ?? [], count: Math.max(changing.count, changing.paths.length) };
}

/** Most entries a source's count of what it does not replicate is taken at. */
const MAX_SOURCE_COUNT = 1_000_000_000;
/** Most characters of a problem the source host sent that are kept. */
const MAX_SOURCE_PROBLEM = 300;

/**
 * The source host's list of entries it does not replicate, bounded again here, as boundedBySource does: a name that is
 * no set path (most are not: that is often why they are not replicated) is left out and still counted, and a problem's
 * text keeps no control character. The count is what makes the snapshot incomplete.
 */
export function notReplicatedBySource(entries: NotReplicatedAtMarker | undefined): NotReplicatedAtMarker | undefined {
  if (!entries) return undefined;
  const named = entries.paths
    .filter(({ path }) => path.length <= MAX_CHANGING_NAME && setPathProblem(path) === undefined)
    // eslint-disable-next-line no-control-regex
    .map(({ path, problem }) => ({ path, problem: problem.slice(0, MAX_SOURCE_PROBLEM).replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g, "?") }));
  // The count is the source's word: held to what a set could hold, so no sum over it leaves the integers.
  return { paths: boundNotReplicated(named)?.paths ?? [], count: Math.min(MAX_SOURCE_COUNT, Math.max(entries.count, entries.paths.length)) };
}

/**
 * True when the snapshot's only problems are files that kept changing while read, or entries the source does not
 * replicate: it is what the target could hold of the source at the marker, and retention goes on behind it (a set with
 * a busy file or a name the target cannot carry would otherwise never prune).
 */
export function onlySourceLimited(summary: SnapshotSummary): boolean {
  if (!summary.changingWhileRead && !summary.notReplicated) return false;
  const { changingWhileRead: _torn, notReplicated: _left, ...rest } = summary;
  return snapshotProblem(rest) === undefined;
}

/** Why a checked snapshot is not a recovery point to rely on, naming the paths; undefined when it is (or its digest could not be checked). */
export function snapshotProblem(summary: SnapshotSummary): string | undefined {
  const problems: string[] = [];
  const named = (items: readonly { path: string; problem: string }[], total: number) => {
    const shown = items.slice(0, 20).map((item) => `${item.path}: ${item.problem}`);
    return `${shown.join("; ")}${total > shown.length ? `; and ${total - shown.length} more (see the snapshot's summary)` : ""}`;
  };
  const { digest, verification, unreadable, changingWhileRead, notReplicated } = summary;
  if (unreadable && unreadable.length > 0) {
    problems.push(`snapshot ${summary.id} left out entries of the live mirror it could not read: ${named(unreadable, summary.unreadableCount ?? unreadable.length)}`);
  }
  // As read while they changed, not as of the marker: an application-consistent recovery point cannot vouch for them.
  if (changingWhileRead) {
    const named = changingWhileRead.paths.slice(0, 20);
    const more = changingWhileRead.count - named.length;
    problems.push(
      `snapshot ${summary.id} holds ${changingWhileRead.count} file(s) that kept changing while the marker's barrier read them, possibly torn copies (quiesce the application with --quiesce): ${named.join("; ")}${more > 0 ? `; and ${more} more (see the snapshot's summary)` : ""}`,
    );
  }
  if (notReplicated) {
    const unnamed = notReplicated.count - notReplicated.paths.length;
    const names = notReplicated.paths.length > 0 ? `: ${named(notReplicated.paths, notReplicated.paths.length)}` : "";
    const more = unnamed > 0 ? `${names ? "; and " : ": "}${unnamed} whose names the target cannot hold` : "";
    problems.push(
      `snapshot ${summary.id} is incomplete: it lacks ${notReplicated.count} entries the source held at the marker that the agent does not replicate${names}${more} (\`tidemark status ${summary.set}\` on the source names them all; rename them or add them to the set's \`exclude\`)`,
    );
  }
  if (digest?.status === "mismatch") {
    const paths = digest.differences && digest.differences.length > 0 ? `: ${named(digest.differences, digest.differenceCount ?? digest.differences.length)}` : "";
    problems.push(`snapshot ${summary.id} does not match the source at the marker (${digest.reason ?? "digests differ"})${paths}`);
  }
  if (verification?.status === "failed") {
    problems.push(`snapshot ${summary.id} failed verification, ${verification.failureCount} of ${verification.objects} content objects bad: ${named(verification.failures, verification.failureCount)}`);
  }
  return problems.length > 0 ? problems.join(". ") : undefined;
}
