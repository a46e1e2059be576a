// Large staged uploads. A message goes only once every payload it names is
// staged, so the sender ends a message before a record whose payload is large
// when a record before it has no large upload of its own: those go at once,
// and the large one starts the next message, which records after it join
// (they wait for it either way: FIFO). Large files in a row share a message,
// so their uploads still go side by side. While such an upload goes on, the
// agent names it in the journal's database with how far it got, so `tidemark
// status` (which reads the journal, not the agent) can say why nothing after
// it is sent meanwhile.

import { hostname } from "node:os";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { MAX_PACK_BYTES } from "../contract/packed-content.ts";
import { formatBytes } from "./format.ts";
import type { Journal, JournalRecord } from "./journal.ts";
import { ownStart } from "./process-identity.ts";
import { processRuns } from "./state-lock.ts";
import type { StagedPayload, Transport } from "./transport/transport.ts";

/**
 * A payload larger than this is large. A message's own pack is up to this size, and its records wait for that upload
 * anyway: a payload no larger costs them little more, and cutting there would make messages of many medium files
 * smaller. Larger ones go up in parts (MULTIPART_THRESHOLD), which is also where their progress is known.
 */
export const LARGE_STAGED_BYTES = MAX_PACK_BYTES;

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
    case "block":
      return `block ${record.index}`;
    default:
      return `record ${record.seq}`;
  }
}

/** A large payload the agent is staging, as `tidemark status` reads it. */
export interface StagedUpload {
  readonly key: string;
  /** The seq of the record it belongs to. */
  readonly seq: number;
  /** What it holds (a file's path, a marker's list ...). */
  readonly what: string;
  readonly size: number;
  /** Bytes stored so far (by this attempt: a retried upload starts again). */
  readonly done: number;
  /** When the upload began (ISO 8601). */
  readonly since: string;
  readonly pid: number;
  readonly host: string;
  readonly started?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS staged_uploads (
  set_name TEXT NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  what TEXT NOT NULL,
  size INTEGER NOT NULL,
  done INTEGER NOT NULL,
  since TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  started TEXT,
  PRIMARY KEY (set_name, key)
) WITHOUT ROWID;`;

/** The staged_uploads table: the large uploads the agent runs, per set. */
export class StagedUploads {
  readonly #begin: StatementSync;
  readonly #othersGone: StatementSync;
  readonly #progress: StatementSync;
  readonly #end: StatementSync;
  readonly #list: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(SCHEMA);
    this.#begin = db.prepare("INSERT OR REPLACE INTO staged_uploads (set_name, key, seq, what, size, done, since, pid, host, started) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)");
    // One agent runs per state folder (state-lock.ts): rows of another process were left by one that stopped mid-upload.
    this.#othersGone = db.prepare("DELETE FROM staged_uploads WHERE set_name = ? AND NOT (pid = ? AND host = ?)");
    this.#progress = db.prepare("UPDATE staged_uploads SET done = ? WHERE set_name = ? AND key = ?");
    this.#end = db.prepare("DELETE FROM staged_uploads WHERE set_name = ? AND key = ?");
    this.#list = db.prepare("SELECT key, seq, what, size, done, since, pid, host, started FROM staged_uploads WHERE set_name = ? ORDER BY seq");
  }

  begin(set: string, upload: Omit<StagedUpload, "done">): void {
    this.#othersGone.run(set, upload.pid, upload.host);
    this.#begin.run(set, upload.key, upload.seq, upload.what, upload.size, upload.since, upload.pid, upload.host, upload.started ?? null);
  }

  progress(set: string, key: string, done: number): void {
    this.#progress.run(done, set, key);
  }

  end(set: string, key: string): void {
    this.#end.run(set, key);
  }

  of(set: string): StagedUpload[] {
    return this.#list.all(set).map((row) => ({
      key: String(row.key),
      seq: Number(row.seq),
      what: String(row.what),
      size: Number(row.size),
      done: Number(row.done),
      since: String(row.since),
      pid: Number(row.pid),
      host: String(row.host),
      ...(typeof row.started === "string" ? { started: row.started } : {}),
    }));
  }
}

/**
 * Stages a payload; a large one is named in the journal meanwhile, with the bytes its upload stored so far. Status
 * is told, never asked: a journal that cannot take the row (a full disk, which the journal's health reports) leaves
 * status without the line, and the upload goes on.
 */
export async function stageNamed(journal: Journal, transport: Transport, payload: StagedPayload & { readonly seq: number; readonly what?: string }): Promise<void> {
  if (!largeUpload(payload)) return transport.stage(payload);
  const { set, key } = payload;
  const quietly = (write: () => void) => {
    try {
      write();
    } catch {
      // Status only: see above.
    }
  };
  const started = ownStart();
  const row = { key, seq: payload.seq, what: payload.what ?? `record ${payload.seq}`, size: payload.size, since: new Date().toISOString(), pid: process.pid, host: hostname(), ...(started !== undefined ? { started } : {}) };
  quietly(() => journal.uploads.begin(set, row));
  try {
    await transport.stage({ ...payload, progress: (done) => quietly(() => journal.uploads.progress(set, key, done)) });
  } finally {
    quietly(() => journal.uploads.end(set, key));
  }
}

/** A large upload as `tidemark status --json` shows it. */
export interface UploadReport {
  readonly what: string;
  readonly seq: number;
  readonly bytes: number;
  readonly done: number;
  readonly since: string;
}

/** The set's large uploads going on now: rows of an agent that is not running name nothing that goes on. */
export function uploadsNow(uploads: StagedUploads, set: string): UploadReport[] {
  return uploads
    .of(set)
    .filter((upload) => processRuns(upload.pid, upload.host, upload.started))
    .map(({ what, seq, size, done, since }) => ({ what, seq, bytes: size, done, since }));
}

/** The status line of an upload going on. */
export function uploadLine(upload: UploadReport): string {
  const percent = upload.bytes > 0 ? ` (${Math.floor((100 * upload.done) / upload.bytes)}%)` : "";
  return `uploading ${upload.what} (seq ${upload.seq}) since ${upload.since}: ${formatBytes(upload.done)} of ${formatBytes(upload.bytes)} stored${percent}; the records after it are sent once it is`;
}
