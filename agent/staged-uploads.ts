// Large staged uploads. A message goes only once every payload it names is
// staged, so the sender ends a message before a record whose payload is large
// when a record before it has no large upload of its own: those go at once,
// and the large one starts the next message, which records after it join
// (they wait for it either way: FIFO). Large files in a row share a message,
// so their uploads still go side by side. While such an upload goes on, the
// agent names it in the journal's database with how far it got, so `tidemark
// status` (which reads the journal, not the agent) can say why nothing after
// it is sent meanwhile.

import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { MULTIPART_THRESHOLD, PARTS_IN_FLIGHT } from "../lambdas/target/index.ts";
import { formatBytes } from "./format.ts";
import type { Journal, JournalRecord } from "./journal.ts";
import { ownStart } from "./process-identity.ts";
import { processRuns } from "./state-lock.ts";
import type { StagedPayload, Transport } from "./transport/transport.ts";

/**
 * A payload larger than this is large (32 MiB). An upload that size keeps PARTS_IN_FLIGHT parts going by itself, so
 * uploading it in a message of its own costs no parallelism, and one message more is little beside its requests;
 * smaller payloads upload side by side in one message (STAGE_CONCURRENCY), which a cut before each would serialise,
 * one message each, when large and medium files come interleaved (as a scan journals them, deferred to its end).
 */
export const LARGE_STAGED_BYTES = PARTS_IN_FLIGHT * MULTIPART_THRESHOLD;

/** A payload too large to hold other records back for (see LARGE_STAGED_BYTES). */
export function largeUpload(payload: StagedPayload | undefined): boolean {
  return payload !== undefined && payload.size > LARGE_STAGED_BYTES;
}

/**
 * True when the message packed so far (`records` records, `staged` their payloads) ends before a record with this
 * payload: it is large, and a record in the message has no large upload of its own (it would wait for this one's).
 */
export function endsMessageBefore(payload: StagedPayload | undefined, records: number, staged: readonly StagedPayload[]): boolean {
  return largeUpload(payload) && staged.filter(largeUpload).length < records;
}

/** What a staged payload of this record holds, in words for status. */
export function uploadLabel(record: JournalRecord): string {
  switch (record.op) {
    case "put":
      return record.delta ? `${record.path} (changed blocks)` : record.path;
    case "task":
      return `the digest list of task ${record.id}`;
    case "verify":
      return `the manifest of verification ${record.id}`;
    default:
      // A volume's block is at most BLOCK_SIZE: never large.
      return `record ${record.seq}`;
  }
}

/** A large payload the agent is staging, as `tidemark status` reads it. */
export interface StagedUpload {
  /** The seq of the record it belongs to. */
  readonly seq: number;
  /** What it holds (a file's path, a marker's list ...). */
  readonly what: string;
  readonly size: number;
  /** Bytes stored so far (by this attempt: a retried upload starts again). */
  readonly done: number;
  /** When the upload began (ISO 8601). */
  readonly since: string;
  /** Since when it waits for the bandwidth budget (config "bandwidth") before it goes, while it does (ISO 8601). */
  readonly waitingSince?: string;
  readonly pid: number;
  readonly host: string;
  readonly started?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS staged_uploads (
  set_name TEXT NOT NULL,
  key TEXT NOT NULL,
  attempt TEXT NOT NULL,
  seq INTEGER NOT NULL,
  what TEXT NOT NULL,
  size INTEGER NOT NULL,
  done INTEGER NOT NULL,
  since TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  started TEXT,
  waiting_since TEXT,
  PRIMARY KEY (set_name, key)
) WITHOUT ROWID;`;

/** The staged_uploads table: the large uploads the agent runs, per set. */
export class StagedUploads {
  readonly #begin: StatementSync;
  readonly #othersGone: StatementSync;
  readonly #progress: StatementSync;
  readonly #waiting: StatementSync;
  readonly #end: StatementSync;
  readonly #list: StatementSync;
  readonly #clear: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(SCHEMA);
    // A journal from before the column: the table is kept, rows stay only while an upload goes on.
    const columns = db.prepare("PRAGMA table_info(staged_uploads)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "waiting_since")) db.exec("ALTER TABLE staged_uploads ADD COLUMN waiting_since TEXT");
    this.#begin = db.prepare("INSERT OR REPLACE INTO staged_uploads (set_name, key, attempt, seq, what, size, done, since, pid, host, started) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)");
    // One agent runs per state folder (state-lock.ts): rows of another process were left by one that stopped mid-upload.
    this.#othersGone = db.prepare("DELETE FROM staged_uploads WHERE NOT (pid = ? AND host = ?)");
    // By attempt: an upload of the same key left running by a refused message's send must not move or end the row of the one sent again.
    this.#progress = db.prepare("UPDATE staged_uploads SET done = ? WHERE set_name = ? AND key = ? AND attempt = ?");
    this.#waiting = db.prepare("UPDATE staged_uploads SET waiting_since = ? WHERE set_name = ? AND key = ? AND attempt = ?");
    this.#end = db.prepare("DELETE FROM staged_uploads WHERE set_name = ? AND key = ? AND attempt = ?");
    this.#clear = db.prepare("DELETE FROM staged_uploads");
    this.#list = db.prepare("SELECT seq, what, size, done, since, waiting_since, pid, host, started FROM staged_uploads WHERE set_name = ? ORDER BY seq");
  }

  /** Names an upload (`attempt` tells it from another upload of the same key); the rows other processes left go. */
  begin(set: string, attempt: string, upload: Omit<StagedUpload, "done"> & { readonly key: string }): void {
    this.#othersGone.run(upload.pid, upload.host);
    this.#begin.run(set, upload.key, attempt, upload.seq, upload.what, upload.size, upload.since, upload.pid, upload.host, upload.started ?? null);
  }

  /** Every row goes: the agent starting (it holds the state folder's lock, so none is of an agent running) stages nothing yet. */
  clear(): void {
    this.#clear.run();
  }

  progress(set: string, key: string, attempt: string, done: number): void {
    this.#progress.run(done, set, key, attempt);
  }

  /** The upload waits for the bandwidth budget since `since` (ISO 8601), or (undefined) goes. */
  waiting(set: string, key: string, attempt: string, since: string | undefined): void {
    this.#waiting.run(since ?? null, set, key, attempt);
  }

  end(set: string, key: string, attempt: string): void {
    this.#end.run(set, key, attempt);
  }

  of(set: string): StagedUpload[] {
    return this.#list.all(set).map((row) => ({
      seq: Number(row.seq),
      what: String(row.what),
      size: Number(row.size),
      done: Number(row.done),
      since: String(row.since),
      ...(typeof row.waiting_since === "string" ? { waitingSince: row.waiting_since } : {}),
      pid: Number(row.pid),
      host: String(row.host),
      ...(typeof row.started === "string" ? { started: row.started } : {}),
    }));
  }
}

/** Progress is written at most this often: each write is a journal commit, an fsync on the agent's thread. */
export const PROGRESS_WRITE_MS = 1_000;

/**
 * Stages a payload; a large one is named in the journal meanwhile, with the bytes its upload stored so far. Status
 * is told, never asked: a journal that cannot take the row (a full disk, which the journal's health reports) leaves
 * status without the line, and the upload goes on.
 */
export async function stageNamed(
  journal: Journal,
  transport: Transport,
  payload: StagedPayload & { readonly seq: number; readonly what: string },
  now: () => number = Date.now,
): Promise<void> {
  if (!largeUpload(payload)) return transport.stage(payload);
  const { set, key } = payload;
  const quietly = (write: () => void) => {
    try {
      write();
    } catch {
      // Status only: see above.
    }
  };
  const attempt = randomUUID();
  const started = ownStart();
  const row = { key, seq: payload.seq, what: payload.what, size: payload.size, since: new Date(now()).toISOString(), pid: process.pid, host: hostname(), ...(started !== undefined ? { started } : {}) };
  quietly(() => journal.atomically(() => journal.uploads.begin(set, attempt, row)));
  // The first part's bytes are written at once, later ones at most every PROGRESS_WRITE_MS.
  let written = { at: Number.NEGATIVE_INFINITY, done: 0 };
  const progress = (done: number) => {
    // A failed attempt's 0 is written at once: S3 no longer holds what the row said.
    if (done === written.done || (done !== 0 && now() - written.at < PROGRESS_WRITE_MS)) return;
    written = { at: now(), done };
    quietly(() => journal.uploads.progress(set, key, attempt, done));
  };
  const pacing = (waiting: boolean) => quietly(() => journal.uploads.waiting(set, key, attempt, waiting ? new Date(now()).toISOString() : undefined));
  try {
    await transport.stage({ ...payload, progress, pacing });
  } finally {
    quietly(() => journal.uploads.end(set, key, attempt));
  }
}

/**
 * At the agent's start: the rows an agent left when it stopped mid-upload go, which would otherwise stay until the
 * next large upload. Status hides them meanwhile, so a journal that cannot delete them (a full disk) starts anyway.
 */
export function forgetUploadsLeft(journal: Journal): void {
  try {
    journal.uploads.clear();
  } catch {
    // Status only: see above.
  }
}

/** A large upload as `tidemark status --json` shows it. */
export interface UploadReport {
  readonly what: string;
  readonly seq: number;
  readonly bytes: number;
  readonly done: number;
  readonly since: string;
  /** It waits for the bandwidth budget (config "bandwidth") before its upload goes on. */
  readonly waitingForBandwidth?: { readonly since: string };
}

/**
 * The set's large uploads going on now, as the agent running on this state folder (this host's) named them: rows of
 * an agent that is not running, or of another host (a state folder moved, a container recreated), name nothing that
 * goes on.
 */
export function uploadsNow(uploads: StagedUploads, set: string): UploadReport[] {
  return uploads
    .of(set)
    .filter((upload) => upload.host === hostname() && processRuns(upload.pid, upload.host, upload.started))
    .map(({ what, seq, size, done, since, waitingSince }) => ({ what, seq, bytes: size, done, since, ...(waitingSince !== undefined ? { waitingForBandwidth: { since: waitingSince } } : {}) }));
}

/** The status line of an upload going on. */
export function uploadLine(upload: UploadReport): string {
  const percent = upload.bytes > 0 ? ` (${Math.floor((100 * upload.done) / upload.bytes)}%)` : "";
  const waits = upload.waitingForBandwidth ? `waiting since ${upload.waitingForBandwidth.since} for the bandwidth budget (the config's "bandwidth" limit) before it goes on, ` : "";
  return `uploading ${upload.what} (seq ${upload.seq}) since ${upload.since}: ${waits}${formatBytes(upload.done)} of ${formatBytes(upload.bytes)} stored${percent}; the records after it are sent once it is staged`;
}
