// A marker's digest read while its barrier scans (bench/notes.md, "Marker
// latency"). Inside the set's lane the index changes only by the barrier's own
// appends, so when nothing wrote the set's entries from the start of the read
// until its answer (the usual case: a quiesced set), the index it read (on a
// worker thread, through a read-only connection of its own: one statement, one
// snapshot of the last commit) is the index after the barrier, exactly. When
// anything did, its result is dropped and the digest read again after the
// scan, as without it.

import module from "node:module";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import type { TaskFields } from "../contract/tasks.ts";
import { indexEntries } from "./journal-index.ts";
import type { Journal } from "./journal.ts";
import { carriesDigest, fileSetDigestOf, markerDigest, type MarkerDigestFields } from "./marker-digest.ts";
import type { SetSpec } from "./set-spec.ts";

const ROLE = "tidemark-early-digest";

interface Job {
  readonly database: string;
  readonly spoolDir: string;
  readonly set: string;
}

interface Answer {
  readonly fields?: MarkerDigestFields;
  readonly error?: string;
}

export interface MarkerDigestRead {
  /** The marker's digest of the index as it is now, once the barrier is journaled. */
  finish(): Promise<MarkerDigestFields>;
  /** No marker follows (the barrier failed): what the early read wrote to the spool is removed. */
  discard(): Promise<void>;
}

/** The digest read on a worker thread; undefined when the worker could not read it. */
function readOnWorker(job: Job): Promise<MarkerDigestFields | undefined> {
  return new Promise((resolve) => {
    let worker: Worker;
    try {
      const cache = module.getCompileCacheDir();
      // The compile cache the agent turned on (a worker does not inherit it): see folderWorkerOptions.
      worker = new Worker(new URL(import.meta.url), { workerData: { role: ROLE, job }, ...(cache ? { env: { ...process.env, NODE_COMPILE_CACHE: cache } } : {}) });
    } catch {
      resolve(undefined);
      return;
    }
    worker.once("message", (answer: Answer) => resolve(answer.fields));
    worker.once("error", () => resolve(undefined));
    worker.once("exit", () => resolve(undefined));
  });
}

/** Inline manifest bytes come back from the worker as a plain Uint8Array: a Buffer, as the journal's own read gives. */
function asJournaled(fields: MarkerDigestFields): MarkerDigestFields {
  const content = fields.content;
  if (content === undefined || !("bytes" in content)) return fields;
  const { bytes } = content;
  return { ...fields, content: { ...content, bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) } };
}

/** Starts reading the marker's digest; call inside the set's lane, before its barrier scan. */
export function startMarkerDigest(journal: Journal, spec: SetSpec, fields: TaskFields): MarkerDigestRead {
  const afterwards = () => markerDigest(journal, spec, fields);
  if (spec.volume || !carriesDigest(fields)) return { finish: afterwards, discard: async () => undefined };
  const writes = journal.index.writes(spec.name);
  const early = readOnWorker({ database: journal.path, spoolDir: journal.spoolDir, set: spec.name });
  const drop = async (read: MarkerDigestFields | undefined) => {
    if (read?.content && "spool" in read.content) await rm(join(journal.spoolDir, read.content.spool), { force: true });
  };
  return {
    async finish() {
      const read = await early;
      if (read && journal.index.writes(spec.name) === writes) return asJournaled(read);
      await drop(read);
      return afterwards();
    },
    async discard() {
      await drop(await early);
    },
  };
}

async function readDigest({ database, spoolDir, set }: Job): Promise<MarkerDigestFields> {
  const db = new DatabaseSync(database, { readOnly: true });
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    return await fileSetDigestOf(spoolDir, indexEntries(db, set));
  } finally {
    db.close();
  }
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === ROLE) {
  readDigest((workerData as { job: Job }).job).then(
    (fields) => parentPort?.postMessage({ fields } satisfies Answer),
    (error: unknown) => parentPort?.postMessage({ error: String(error) } satisfies Answer),
  );
}
