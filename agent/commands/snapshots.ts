// `tidemark snapshots`, `tidemark restore` and `tidemark prune`: the
// recovery points `snapshot` markers left on the target.

import { resolve } from "node:path";
import { leftOutCount, type PruneReport, type SnapshotSummary } from "../../contract/tasks.ts";
import { listSnapshots, readSnapshot, SnapshotError, type TargetStore } from "../../lambdas/target/index.ts";
import { latestJson, latestLine, latestSnapshot, type LatestSnapshot } from "../snapshot-origin.ts";
import { configPath, loadConfig, type AgentConfig } from "../config.ts";
import { escapeControl, formatBytes, table } from "../format.ts";
import { runPrune, type Progress } from "../operations.ts";
import { isEbsSnapshotId, restoreEbsSnapshot, restoreVolumeSnapshot, type VolumeRestoreResult } from "../restore-volume.ts";
import { createProgressView } from "../progress.ts";
import { replicatingSet, setsInside } from "../replicated-folder.ts";
import { realPathsAround } from "../root-places.ts";
import { RestoreError, restoreSnapshot, type RestoreResult } from "../restore.ts";
import { setIdDroppedLine, type WriteOptions } from "../restore-writer.ts";
import { parseMoment, restoreAt } from "../restore-at.ts";
import { stringOption, UsageError, type Command } from "./command.ts";
import { checkSet, heldAsJson, operate } from "./operate.ts";
import { setArgument } from "./set-argument.ts";
import { withEbsClient, withTargetStore } from "./target-store.ts";
import { withRestoreStore, type ReadPath } from "./restore-store.ts";

const CONFIG_OPTION = "  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)";

export const snapshotsCommand: Command = {
  name: "snapshots",
  help: `Usage: tidemark snapshots SET [--json] [--config FILE]

Lists the snapshots \`snapshot\` and \`ebs-snapshot\` markers took of a set,
oldest first: snapshot id, the task that took it, label, when, and how many
files (or, for a volume set, blocks holding data, and the EBS snapshot cut
from it) and bytes it holds.
Each restores byte for byte with \`tidemark restore\`, however far the live
mirror has moved on since.

DIGEST compares the snapshot with what the source held at the marker:
matched, MISMATCH (the task failed; --json names the paths), or unverified
(a marker sent straight to the queue: no barrier scan saw the source).
CHECK is the verification of its content right after it was taken (every
object present, its SHA-256 right): verified, FAILED (the paths in --json),
pending while it runs, or unverified.
HOLDS says INCOMPLETE when the snapshot left entries out (their object could
not be read when it was taken; --json names them as "unreadable"), or lacks
entries the source held at the marker and the agent does not replicate
(names the target cannot carry, changes it refused; --json: "notReplicated"):
its restore names them as not restored and exits 3, and \`prune --keep N\` does
not count it among the N. It says TORN when files kept changing while the
marker's barrier read them (--json names them as "changingWhileRead"): the
snapshot holds them as read, possibly no state they were ever in; its task
failed naming them, and its restore writes them and names them as possibly
torn.

Options:
  --json          print the snapshots as a JSON array
${CONFIG_OPTION}

Examples:
  tidemark snapshots db
  tidemark snapshots db --json | jq -r '.[-1].id'
  tidemark snapshots db --json | jq '.[] | select(.verification.status == "failed") | .verification.failures'`,
  positionals: true,
  options: { json: { type: "boolean" }, config: { type: "string" } },
  async run(values, positionals) {
    setArgument(positionals[0], "list the snapshots of", stringOption(values.config));
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, positionals[0], "list the snapshots of");
    const snapshots = await withTargetStore(config, (store) => listSnapshots(store, set));
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify(snapshots, null, 2)}\n`);
      return 0;
    }
    if (snapshots.length === 0) {
      process.stdout.write(`set ${set} has no snapshots yet (take one with \`tidemark task ${set} --wait\`)\n`);
      return 0;
    }
    const content = (s: SnapshotSummary) =>
      s.volume ? `${s.volume.blocks} blocks${s.volume.ebsSnapshotId ? ` (EBS ${s.volume.ebsSnapshotId})` : ""}` : `${s.files} files${incompleteNote(s)}`;
    const rows = snapshots.map((s) => [s.id, s.taskId, escapeControl(s.label ?? ""), s.takenAt, content(s), formatBytes(s.bytes), digestColumn(s), checkColumn(s)]);
    process.stdout.write(`${table(["SNAPSHOT", "TASK", "LABEL", "TAKEN", "HOLDS", "BYTES", "DIGEST", "CHECK"], rows)}\n`);
    return 0;
  },
};

export const restoreCommand: Command = {
  name: "restore",
  help: `Usage: tidemark restore SET --snapshot ID --to DIR|FILE [--force [--delete]] [--keep-set-id] [--json] [--config FILE]
       tidemark restore SET --at TIME --to DIR|FILE [--force [--delete]] [--keep-set-id] [--json] [--config FILE]

Writes the set as it was at the snapshot into DIR: file contents (each
checked against its size and sha256 as it streams from the bucket, large
files in ranged parts, never whole in memory), modes, modification times,
symlinks (as links, never followed), files that were hard links of one
another (as hard links) and empty folders; blocks of zeros are left as holes
(a sparse file takes about the disk it took at the source; a swap file needs
fallocate again). Owners (uid/gid), ACLs and extended attributes are not
replicated: everything restored belongs to the user running the restore
(root:root as root). So files come back without their set-uid and set-gid
bits (a file set-uid to nobody on the source would otherwise be set-uid
root) unless --keep-set-id: the restore says how many, and the first ten,
on a note line and in --json ("setIdDropped"); that is no failure. Folders
keep theirs, and the sticky bit stays.
DIR must be empty or missing unless --force is given;
with --force, what the snapshot holds is written over DIR's content, and
what DIR holds beyond it is listed and left alone, or removed with --delete.

An entry that cannot be written (its content missing or altered in the
bucket, a name the filesystem refuses, a path below a symlink) does not stop
the restore: everything else is written, each failure is named with why,
and the exit code is 3. No temp file is left behind, also when interrupted.

A volume set restores to FILE: the disk image as it was at the marker,
rebuilt from the block store (every block checked against its sha256; zeros
left as holes). With an EBS snapshot id (snap- and 17 hex digits), the image
is read back from EBS through ListSnapshotBlocks and GetSnapshotBlock. FILE
must not exist unless --force is given (--force onto a block device writes
the device in place). Reads with the agent's credentials.

With --at, the set as it was at any moment of the target's protection window
(tidemark:pointInTimeDays, 7 days by default; see \`tidemark timeline SET\`):
every change the agent journaled at or before TIME and nothing after, hard
links included. Such a moment is crash-consistent, like a journal replay; a
marker's snapshot is the application-consistent point.

Options:
  --snapshot ID   the snapshot (see \`tidemark snapshots SET\`); "latest" for the newest (a marker's of the agent's stream
                  or one sent straight to the queue alike: restore says which it was); or an EBS snapshot id
  --at TIME       a moment instead: ISO 8601 (2026-11-30T10:15:02.250Z; local time without a zone) or a span ago (15m, 2h, 3d)
  --to DIR|FILE   where to restore
  --force         write into a folder that is not empty, or over an existing file or device, or inside
                  a set's source folder (a copy there is replicated back into that set; restoring a
                  set over its own folder is not refused for that)
  --delete        with --force: remove what the snapshot does not hold from DIR (refused when DIR
                  holds another set's folder)
  --json          print a summary as JSON (its "failures" list what was not written; "reads", in a
                  file snapshot's restore and any --at restore, says how the bucket's objects were
                  read: "direct" by signed GETs sent without the SDK, "sdk" through the AWS SDK,
                  where a proxy or CA bundle applies to the endpoint; a volume or EBS snapshot's
                  restore has none; "setIdDropped", when there are any, counts and names the files
                  restored without their set-uid/set-gid bits)
  --keep-set-id   restore files' set-uid and set-gid bits as well (file sets): only when you know the
                  owners are right for them, e.g. root restoring a tree that was root's on the source,
                  and chown what was not before anyone runs it
${CONFIG_OPTION}

Exit codes: 0 restored, 3 some entries not restored (each named), 1 the restore could not run,
or stopped (the target not answering, the disk full: what was written stays).

Examples:
  tidemark restore db --snapshot latest --to /srv/restore/db
  tidemark restore db --snapshot latest --to /srv/db --force --delete
  tidemark restore db --snapshot snap-20261124T020000Z-3f9a1c --to ./db-before-upgrade
  tidemark restore vm --snapshot latest --to ./vm-disk.img
  tidemark restore vm --snapshot snap-0123456789abcdef0 --to ./vm-disk.img
  tidemark restore db --at 2026-11-30T10:15:02Z --to ./db-before-the-incident
  tidemark restore db --at 15m --to ./db-a-quarter-hour-ago`,
  positionals: true,
  options: {
    snapshot: { type: "string" },
    at: { type: "string" },
    to: { type: "string" },
    force: { type: "boolean" },
    delete: { type: "boolean" },
    "keep-set-id": { type: "boolean" },
    json: { type: "boolean" },
    config: { type: "string" },
  },
  async run(values, positionals) {
    // The arguments first: a usage error is said as one (exit 2) with no config at hand too.
    const named = setArgument(positionals[0], "restore", stringOption(values.config));
    if (values.delete === true && values.force !== true) throw new UsageError("--delete removes what the snapshot does not hold from a folder that is not empty: it needs --force");
    const id = stringOption(values.snapshot);
    const at = stringOption(values.at);
    const to = stringOption(values.to);
    if (id !== undefined && at !== undefined) throw new UsageError("give --snapshot ID or --at TIME, not both");
    if (id === undefined && at === undefined) throw new UsageError("name the snapshot with --snapshot ID (see `tidemark snapshots " + named + "`), or a moment with --at TIME");
    if (to === undefined) throw new UsageError("name the folder to restore into with --to DIR");
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, named, "restore");
    const realOf = await realPathsAround(config.sets, resolve(to), (line) => process.stderr.write(`${escapeControl(line)}\n`));
    const into = replicatingSet(config.sets, resolve(to), set, realOf);
    if (into && values.force !== true) {
      throw new UsageError(
        `--to ${escapeControl(to)} is inside the folder of set ${into.name} (${escapeControl(into.root)}), which the agent replicates: the restored copy would be sent back into set ${into.name} as new files. ` +
          "Restore outside it, exclude that folder in the set's config, or give --force to restore there all the same",
      );
    }
    // --delete would remove another set's files as "not in the snapshot": never, --force or not.
    const holds = values.delete === true ? setsInside(config.sets, resolve(to), set, realOf) : [];
    if (holds.length > 0) {
      throw new UsageError(
        `--to ${escapeControl(to)} holds the folder of ${holds.map((s) => `set ${s.name} (${escapeControl(s.root)})`).join(", ")}: --delete would remove its files as not in the snapshot. ` +
          "Restore into a folder that holds no other set's, or without --delete",
      );
    }
    if (into) process.stderr.write(`warning: --to ${escapeControl(to)} is inside the folder of set ${into.name} (${escapeControl(into.root)}), which the agent replicates: restoring there all the same (--force); the restored copy will be sent into set ${into.name} as new files\n`);
    const json = values.json === true;
    const keepSetId = values["keep-set-id"] === true;
    if (at !== undefined) return runRestoreAt(config, set, parseMoment(at), resolve(to), { force: values.force === true, delete: values.delete === true, keepSetId, json });
    if (id === undefined) throw new UsageError("name the snapshot with --snapshot ID");
    const view = json ? undefined : createProgressView({ tty: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) });
    const options = { force: values.force === true, ...(view ? { onProgress: (p: Progress) => view.update(p) } : {}) };
    let latest: LatestSnapshot | undefined;
    const result = await withRestoreStore(config, async (store, readPath) => {
      // A tidemark snapshot first; an id that names none and looks like EBS's is read back from EBS.
      latest = id === "latest" ? await latestSnapshot(store, set) : undefined;
      const summary = id === "latest" ? latest?.summary : await findSnapshot(store, set, id);
      if (summary && leftOutCount(summary) > 0) process.stderr.write(`snapshot ${summary.id}${id === "latest" ? " (the latest)" : ""} is INCOMPLETE: ${leftOutCount(summary)} entries were left out when it was taken${summary.notReplicated ? ` (${summary.notReplicated.count} of them the source held and never replicated)` : ""}; they are not restored\n`);
      if (summary?.changingWhileRead) process.stderr.write(`snapshot ${summary.id}${id === "latest" ? " (the latest)" : ""} is TORN: ${summary.changingWhileRead.count} files kept changing while its barrier read them; they are restored as read\n`);
      try {
        if (!summary && isEbsSnapshotId(id)) return await withEbsClient(config, (ebs) => restoreEbsSnapshot(ebs, id, resolve(to), options));
        if (!summary) throw new UsageError(`set "${set}" has no snapshots to restore`);
        if (summary.volume) return await restoreVolumeSnapshot(store, summary, resolve(to), options);
        return { ...(await restoreFileSet(store, summary, resolve(to), { ...options, delete: values.delete === true, keepSetId })), reads: await readPath() };
      } finally {
        view?.done();
      }
    });
    // Which snapshot `latest` was, and whether the agent's stream or the queue made it (snapshot-origin.ts): after the
    // restore's own lines, or as `latest` in --json's object.
    const said = latest && json ? { latest: latestJson(latest) } : {};
    const saidLatest = () => latest && !json && process.stdout.write(`${latestLine(latest)}\n`);
    if ("source" in result) {
      printVolumeRestore(set, { ...result, ...said }, json);
      saidLatest();
      return 0;
    }
    const code = printRestore(set, { ...result, ...said }, json);
    saidLatest();
    return code;
  },
};

/** A file set's restore; interrupted (SIGINT, SIGTERM), the writer stops and removes its temp files before the process ends. */
async function restoreFileSet(store: TargetStore, summary: SnapshotSummary, to: string, options: WriteOptions): Promise<RestoreResult> {
  const interrupt = new AbortController();
  const stop = () => interrupt.abort(new RestoreError("restore interrupted; what was written so far stays, no temp files"));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    return await restoreSnapshot(store, summary, to, { ...options, signal: interrupt.signal });
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}

/** Prints a file set's restore; exit code 3 when any entry was not restored. */
function printRestore(set: string, result: RestoreResult & { readonly reads: ReadPath }, json: boolean): number {
  if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else {
    const links = result.hardLinks > 0 ? ` (${result.hardLinks} as hard links)` : "";
    process.stdout.write(
      `restored snapshot ${result.snapshot} of set ${set} to ${escapeControl(result.to)}: ${result.files} files${links} (${formatBytes(result.bytes)}), ${result.dirs} folders, ${result.symlinks} symlinks\n`,
    );
    for (const path of result.deleted) process.stdout.write(`removed (not in the snapshot): ${JSON.stringify(path)}\n`);
    if (result.extra.length > 0) {
      process.stdout.write(`left alone, not in the snapshot (--delete removes them): ${result.extra.length} entries\n`);
      for (const path of result.extra.slice(0, 50)) process.stdout.write(`  ${JSON.stringify(path)}\n`);
      if (result.extra.length > 50) process.stdout.write(`  ... and ${result.extra.length - 50} more (--json lists them all)\n`);
    }
    if (result.setIdDropped) process.stdout.write(`note: ${setIdDroppedLine(result.setIdDropped)}; --keep-set-id keeps them\n`);
    for (const failure of result.failures) process.stderr.write(`not restored: ${JSON.stringify(failure.path)}: ${escapeControl(failure.reason)}\n`);
    const torn = result.possiblyTorn;
    for (const path of torn?.paths ?? []) process.stderr.write(`possibly torn (kept changing while snapshot ${result.snapshot}'s barrier read it; restored as read): ${escapeControl(JSON.stringify(path))}\n`);
    if (torn && torn.count > torn.paths.length) process.stderr.write(`possibly torn: ${torn.count - torn.paths.length} more files; the snapshot's summary names only the ${torn.paths.length} above\n`);
    const unnamed = result.leftOutUnnamed ?? 0;
    const named = result.failures.filter((failure) => failure.reason.startsWith(`left out of snapshot ${result.snapshot} when it was taken`)).length;
    if (unnamed > 0) {
      // None named: the source's names were ones the target cannot hold (a backslash, a control character), or the
      // summary kept no names at all; the source still knows them.
      const which = named > 0 ? `its summary names only the ${named} above` : `its summary names none of them (\`tidemark status ${set}\` on the source names the entries it does not replicate)`;
      process.stderr.write(`not restored: ${unnamed} ${named > 0 ? "more " : ""}entries left out of snapshot ${result.snapshot} when it was taken; ${which}\n`);
    }
    if (result.failures.length + unnamed > 0) process.stderr.write(`${result.failures.length + unnamed} entries not restored; everything else was\n`);
  }
  return result.failures.length > 0 || (result.leftOutUnnamed ?? 0) > 0 ? 3 : 0;
}

/** What the HOLDS column adds for a snapshot that left entries out, or holds files that kept changing while read. */
function incompleteNote(s: SnapshotSummary): string {
  const count = leftOutCount(s);
  const torn = s.changingWhileRead ? ` (TORN: ${s.changingWhileRead.count} changing while read)` : "";
  return `${count > 0 ? ` (INCOMPLETE: ${count} left out)` : ""}${torn}`;
}

/** The digest check of a snapshot, as the table shows it ("-" for a snapshot taken before digests). */
function digestColumn(s: SnapshotSummary): string {
  if (!s.digest) return "-";
  if (s.digest.status !== "mismatch") return s.digest.status;
  const count = s.digest.differenceCount;
  return count !== undefined ? `MISMATCH (${count} paths)` : "MISMATCH";
}

/** The content check of a snapshot, as the table shows it. */
function checkColumn(s: SnapshotSummary): string {
  const v = s.verification;
  if (!v) return "-";
  if (v.status === "failed") return `FAILED (${v.failureCount} of ${v.objects})`;
  if (v.status === "pending") return `pending (${v.objects} checked)`;
  return v.status;
}

/** `restore --at`: the set at a moment of the protection window; exit code 3 when any entry was not restored. */
async function runRestoreAt(config: AgentConfig, set: string, at: number, to: string, options: { force: boolean; delete: boolean; keepSetId: boolean; json: boolean }): Promise<number> {
  const view = options.json ? undefined : createProgressView({ tty: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) });
  const interrupt = new AbortController();
  const stop = () => interrupt.abort(new RestoreError("restore interrupted; what was written so far stays, no temp files"));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const result = await withRestoreStore(config, async (store, readPath) => {
    try {
      const write: WriteOptions = { force: options.force, delete: options.delete, keepSetId: options.keepSetId, signal: interrupt.signal, ...(view ? { onProgress: (p: Progress) => view.update(p) } : {}) };
      return { ...(await restoreAt(store, set, at, to, write)), reads: await readPath() };
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      view?.done();
    }
  });
  const failures = result.failures ?? [];
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return failures.length > 0 ? 3 : 0;
  }
  const links = (result.hardLinks ?? 0) > 0 ? ` (${result.hardLinks} as hard links)` : "";
  const holds =
    result.kind === "volume"
      ? `${formatBytes(result.size ?? 0)} volume, ${result.blocks ?? 0} blocks holding data (${formatBytes(result.bytes)})`
      : `${result.files} files${links} (${formatBytes(result.bytes)}), ${result.dirs} folders, ${result.symlinks} symlinks`;
  process.stdout.write(
    `restored set ${set} as it was at ${result.at} (last change ${result.lastChangeAt}${result.lastSeq !== undefined ? `, seq ${result.lastSeq}` : ""}) to ${escapeControl(result.to)}: ${holds}\n`,
  );
  if (result.newestChangeAt !== undefined) {
    process.stdout.write(`note: the target's newest change is from ${result.newestChangeAt}; changes journaled after it may still be on their way (see \`tidemark status\`)\n`);
  }
  for (const path of result.deleted ?? []) process.stdout.write(`removed (not in the recovery point): ${JSON.stringify(path)}\n`);
  if ((result.extra ?? []).length > 0) process.stdout.write(`left alone, not in the recovery point (--delete removes them): ${result.extra?.length ?? 0} entries\n`);
  if (result.setIdDropped) process.stdout.write(`note: ${setIdDroppedLine(result.setIdDropped)}; --keep-set-id keeps them\n`);
  for (const failure of failures) process.stderr.write(`not restored: ${JSON.stringify(failure.path)}: ${failure.reason}\n`);
  if (failures.length > 0) process.stderr.write(`${failures.length} entries not restored; everything else was\n`);
  return failures.length > 0 ? 3 : 0;
}

/** What a prune did, and what the target kept despite it. */
export function describePrune(set: string, report: PruneReport): string {
  const lines = [`set ${set}: kept ${report.kept.length} snapshots, deleted ${report.deleted.length}`];
  if (report.windowDays !== undefined) {
    const held = report.protected?.length ?? 0;
    if (held > 0) lines.push(`the target kept ${held} more (${report.protected?.join(", ")}): taken inside its ${report.windowDays}-day protection window`);
    lines.push(`preserved content and point-in-time history are deleted only by the target's own retention, once older than ${report.windowDays} days`);
  } else {
    lines.push(`${report.contentDeleted} preserved objects (${formatBytes(report.contentBytesDeleted)}) no longer needed were deleted`);
  }
  return lines.join("\n");
}

/** The snapshot with this id; undefined when there is none and the id may be an EBS snapshot's. */
async function findSnapshot(store: TargetStore, set: string, id: string): Promise<SnapshotSummary | undefined> {
  try {
    return await readSnapshot(store, set, id);
  } catch (error) {
    if (error instanceof SnapshotError && isEbsSnapshotId(id)) return undefined;
    throw error;
  }
}

function printVolumeRestore(set: string, result: VolumeRestoreResult, json: boolean): void {
  if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else {
    const from = result.source === "ebs" ? "EBS snapshot" : "snapshot";
    process.stdout.write(
      `restored ${from} ${result.snapshot} of set ${set} to ${escapeControl(result.to)}: ${formatBytes(result.size)} volume, ${result.blocks} blocks holding data (${formatBytes(result.bytes)})\n`,
    );
  }
}

export const pruneCommand: Command = {
  name: "prune",
  help: `Usage: tidemark prune SET --keep N [--json] [--config FILE]

Keeps the newest N snapshots of a set and deletes the others. The applier
does the deleting when it reaches the request in the set's stream, so it
never races a snapshot being taken. Uses the running agent when there is one
(one still starting is waited for, up to 60 s), else starts one (another
command's own agent is waited for to end first, up to 5 min).
Exits 1 at once when another key owns the set on the target (this host's
sends are held until \`tidemark adopt SET\`; --json prints "error":
"sends-held").

What the target will not delete on a source host's word: a snapshot taken
inside its protection window (tidemark:pointInTimeDays, 7 days by default)
is kept whatever N says, and so is every byte a moment of the window needs.
Preserved content and older history go only by the target's own retention,
once the window no longer needs them. With the window off (0 days), the
content no kept snapshot refers to is deleted here too.

Options:
  --keep N        snapshots to keep, digits only (0 deletes them all; an empty
                  value is refused)
  --json          print the report as JSON
${CONFIG_OPTION}

Examples:
  tidemark prune db --keep 7`,
  positionals: true,
  options: { keep: { type: "string" }, json: { type: "boolean" }, config: { type: "string" } },
  async run(values, positionals) {
    // The arguments first: a usage error is said as one (exit 2) with no config at hand too.
    const named = setArgument(positionals[0], "prune", stringOption(values.config));
    const keepText = stringOption(values.keep);
    if (keepText === undefined) throw new UsageError("--keep N is required: the number of snapshots to keep (0 deletes them all)");
    // Digits only: an empty --keep "$N" (N unset) read as 0, which deletes every snapshot.
    const keep = /^\d+$/.test(keepText) ? Number(keepText) : Number.NaN;
    if (!Number.isSafeInteger(keep)) throw new UsageError(`--keep must be a whole number of snapshots, got "${keepText}"`);
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, named, "prune");
    const json = values.json === true;
    let report: PruneReport;
    try {
      report = await operate<PruneReport>(config, "/prune", { set, keep }, (deps) => runPrune(deps, set, keep), { quiet: json });
    } catch (error) {
      return heldAsJson(error, json);
    }
    if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else process.stdout.write(`${describePrune(set, report)}\n`);
    return 0;
  },
};
