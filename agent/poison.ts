// Poison records (issue 15): a record the target refused for good leaves the
// stream, so the rest of the set keeps flowing. Its seq stays, as a skip
// record, and the chain the target checks is unbroken. The target keeps the
// path's last good version (a DR user restores an older copy rather than
// none, and nothing the source sends may destroy a recovery point), and the
// path is tracked as not replicated, named in `tidemark status`, until a later
// change of it is delivered. Its index entry is invalidated so the next scan
// journals it again, whole, and retries.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Change, Journal } from "./journal.ts";

/** The sender could not deliver the record at seq: the target refused it for good. */
export class RecordRefusedError extends Error {
  override name = "RecordRefusedError";
  readonly seq: number;
  constructor(seq: number, cause: Error) {
    super(`record ${seq} refused by the target: ${cause.message}`, { cause });
    this.seq = seq;
  }
}

export interface SkippedRecord {
  readonly seq: number;
  /** Paths that are not replicated now (empty for a record of no path: a marker, a verify, a block). */
  readonly paths: string[];
  /** What the record was, for the log. */
  readonly what: string;
}

function describe(change: Change): string {
  switch (change.op) {
    case "rename":
      return `rename ${change.from} -> ${change.to}`;
    case "task":
    case "verify":
    case "prune":
      return `${change.op} ${change.id}`;
    case "block":
      return `block ${change.index}`;
    case "resync":
      return "resync";
    case "drill":
      return `drill ${change.report.id}`;
    default:
      return `${change.op} ${change.path}`;
  }
}

function spoolOf(change: Change): string | undefined {
  if ((change.op === "put" || change.op === "verify") && "spool" in change.content) return change.content.spool;
  // A marker's digest list may wait in a spool file too.
  if (change.op === "task" && change.content && "spool" in change.content) return change.content.spool;
  return undefined;
}

/**
 * Takes the refused record at seq out of the stream (see the top of this
 * file). Later unsent changes of the same path that build on the refused
 * version (deltas against it, a move of it) cannot apply either: a delta
 * becomes a skip too, a move becomes a delete of its source with its target
 * skipped. Returns what was skipped; undefined when the record was sent meanwhile.
 */
export async function skipRefusedRecord(journal: Journal, set: string, seq: number, reason: string): Promise<SkippedRecord | undefined> {
  const spools: string[] = [];
  const skipped = journal.atomically((): SkippedRecord | undefined => {
    const record = journal.record(set, seq);
    if (!record || record.change.op === "skip") return undefined;
    const change = record.change;
    const what = describe(change);
    const replace = (at: number, old: Change, next: Change) => {
      const spool = spoolOf(old);
      if (spool) spools.push(spool);
      journal.replaceRecord(set, at, next);
    };
    const paths: string[] = [];
    /** The path no longer holds on the target what the source journaled after seq `from`. */
    const broken = (path: string, from: number, why: string) => {
      paths.push(path);
      journal.markSkipped(set, path, from, why);
      for (const later of journal.recordsTouching(set, path, from)) {
        const next = later.change;
        if (next.op === "put" && next.delta) {
          replace(later.seq, next, { op: "skip", path, reason: `based on a version the target refused: ${why}` });
          continue;
        }
        if (next.op === "rename" && next.from === path) {
          replace(later.seq, next, { op: "delete", path });
          broken(next.to, later.seq, `moved from ${path}, whose latest version the target refused: ${why}`);
          return;
        }
        // A whole put, a delete, a new link or folder, a move onto the path: what follows no longer needs the refused version.
        return;
      }
      journal.index.invalidate(set, path);
    };
    if (change.op === "rename") {
      // The source is gone on the source host: deleting it keeps the target true; the moved file is sent again.
      replace(seq, change, { op: "delete", path: change.from });
      broken(change.to, seq, reason);
    } else {
      replace(seq, change, { op: "skip", path: "path" in change ? change.path : what, reason });
      if ("path" in change) broken(change.path, seq, reason);
      // The target's image keeps the block's old content: listed until a resync's full mirror sends it again.
      else if (change.op === "block") {
        paths.push(what);
        journal.markSkipped(set, what, seq, `${reason}; the target's image differs in this block until \`tidemark mirror ${set} --mode full\``);
      }
      // A task that never reaches the target never runs: named until a later marker of the set (or a resync) is sent, never silent.
      else if (change.op === "task") {
        paths.push(what);
        journal.markSkipped(set, what, seq, `${reason}; this task (${change.fields.action}) did not run on the target; insert a new marker: \`tidemark task ${set}\``);
      }
    }
    return { seq, paths, what };
  });
  for (const spool of spools) await rm(join(journal.spoolDir, spool), { force: true });
  return skipped;
}
