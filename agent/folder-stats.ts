// The listing of a folder and the lstat of each entry, read on a worker
// thread. A barrier scan of an unchanged tree is an lstat per entry (the
// kernel's work) and a read of the index with a comparison per entry (the
// agent's): with the lstats on another thread, and folders read ahead of the
// scan, the two run side by side instead of one after the other.

import module from "node:module";
import { closeSync, lstatSync, readdirSync, type BigIntStats } from "node:fs";
import { openFolderInSet } from "./set-files.ts";
import { isMainThread, parentPort, Worker, workerData, type WorkerOptions } from "node:worker_threads";

/** What a scan compares an entry by (a BigIntStats is one). */
export type EntryStat = Pick<BigIntStats, "isFile" | "isDirectory" | "isSymbolicLink" | "mode" | "size" | "mtimeNs" | "ctimeNs" | "ino">;

export interface FolderEntry {
  readonly name: string;
  /** Undefined when the entry went away (or could not be read) between the listing and its lstat. */
  readonly stat: EntryStat | undefined;
}

const ROLE = "tidemark-folder-stats";
const GONE = 0;
const FILE = 1;
const DIRECTORY = 2;
const SYMLINK = 3;
const OTHER = 4;
/** Values packed per entry. */
const STAT_VALUES = 5;

interface Listing {
  readonly names: string[];
  /** Per entry: GONE, FILE, DIRECTORY, SYMLINK or OTHER. */
  readonly kinds: Uint8Array;
  /** Per entry: mode, size, mtimeNs, ctimeNs, ino (STAT_VALUES of them; an inode above 2^63 as its two's complement). */
  readonly values: BigInt64Array;
}

interface Answer {
  readonly id: number;
  readonly listing?: Listing;
  readonly error?: { readonly code?: string; readonly message: string };
}

function kindOf(st: BigIntStats): number {
  if (st.isFile()) return FILE;
  if (st.isDirectory()) return DIRECTORY;
  if (st.isSymbolicLink()) return SYMLINK;
  return OTHER;
}

/**
 * The folder's listing with each entry's lstat, on the calling thread. `real`: where the folder must be (set-files.ts
 * openFolderInSet: a folder that became a symlink, or one reached through a symlink, is not listed); undefined for a
 * set's root.
 */
function listFolder(dir: string, real: string | undefined): Listing {
  const opened = openFolderInSet(dir, real);
  let names: string[];
  try {
    names = readdirSync(opened.path);
  } finally {
    closeSync(opened.fd);
  }
  const kinds = new Uint8Array(names.length);
  const values = new BigInt64Array(names.length * STAT_VALUES);
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  names.forEach((name, i) => {
    try {
      const st = lstatSync(`${prefix}${name}`, { bigint: true });
      kinds[i] = kindOf(st);
      const at = i * STAT_VALUES;
      values[at] = st.mode;
      values[at + 1] = st.size;
      values[at + 2] = st.mtimeNs;
      values[at + 3] = st.ctimeNs;
      values[at + 4] = BigInt.asIntN(64, st.ino);
    } catch {
      // Gone or unreadable: capture finds out which, and says so.
      kinds[i] = GONE;
    }
  });
  return { names, kinds, values };
}

class PackedStat implements EntryStat {
  readonly #kind: number;
  readonly mode: bigint;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  readonly ino: bigint;

  constructor(kind: number, values: BigInt64Array, at: number) {
    this.#kind = kind;
    this.mode = values[at] ?? 0n;
    this.size = values[at + 1] ?? 0n;
    this.mtimeNs = values[at + 2] ?? 0n;
    this.ctimeNs = values[at + 3] ?? 0n;
    this.ino = BigInt.asUintN(64, values[at + 4] ?? 0n);
  }

  isFile(): boolean {
    return this.#kind === FILE;
  }

  isDirectory(): boolean {
    return this.#kind === DIRECTORY;
  }

  isSymbolicLink(): boolean {
    return this.#kind === SYMLINK;
  }
}

function entriesOf(listing: Listing): FolderEntry[] {
  const { names, kinds, values } = listing;
  return names.map((name, i) => {
    const kind = kinds[i] ?? GONE;
    const stat = kind === GONE ? undefined : new PackedStat(kind, values, i * STAT_VALUES);
    return { name, stat };
  });
}

function errorOf(answer: NonNullable<Answer["error"]>): Error {
  return Object.assign(new Error(answer.message), answer.code !== undefined ? { code: answer.code } : {});
}

/**
 * The folder worker's options. With the compile cache the agent turned on (agent/bin/tidemark.js), the worker uses it
 * too: a worker does not inherit it, and stripping the types of its module loaded Node's TypeScript compiler in the
 * worker at every start (~0.15 s of CPU, ~0.3 s before a scan's first listing; bench/notes.md).
 */
export function folderWorkerOptions(compileCacheDir: string | undefined): WorkerOptions {
  return { workerData: { role: ROLE }, ...(compileCacheDir ? { env: { ...process.env, NODE_COMPILE_CACHE: compileCacheDir } } : {}) };
}

/** Reads folders on one worker thread, in the order asked; in this thread when the worker cannot run. */
class FolderReader {
  #worker: Worker | undefined;
  /** Settles once the worker's thread runs, or is gone. */
  #running: Promise<void> | undefined;
  #broken = false;
  #nextId = 1;
  readonly #waiting = new Map<number, { dir: string; real: string | undefined; resolve: (entries: FolderEntry[]) => void; reject: (error: unknown) => void }>();

  read(dir: string, real: string | undefined): Promise<FolderEntry[]> {
    const worker = this.#started();
    if (!worker) return new Promise((resolve) => resolve(entriesOf(listFolder(dir, real))));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { dir, real, resolve, reject });
      // Keeps the process alive only while a read is waiting.
      if (this.#waiting.size === 1) worker.ref();
      worker.postMessage({ id, dir, real });
    });
  }

  /** Starts the worker before it is asked anything; resolves once its thread runs (at once when it cannot start). */
  start(): Promise<void> {
    this.#started();
    return this.#running ?? Promise.resolve();
  }

  #started(): Worker | undefined {
    if (this.#broken) return undefined;
    if (this.#worker) return this.#worker;
    try {
      const worker = new Worker(new URL(import.meta.url), folderWorkerOptions(module.getCompileCacheDir()));
      worker.on("message", (answer: Answer) => this.#answered(answer));
      worker.on("error", () => this.#fail());
      worker.on("exit", () => this.#fail());
      this.#running = new Promise((resolve) => {
        worker.once("online", resolve);
        worker.once("exit", () => resolve());
      });
      // After its listeners: unref'd before them, a worker started before any read (startFolderReader) kept
      // `tidemark run` from exiting after a config error (test/unit/run-start.test.ts).
      worker.unref();
      this.#worker = worker;
      return worker;
    } catch {
      this.#broken = true;
      return undefined;
    }
  }

  #answered(answer: Answer): void {
    const waiting = this.#waiting.get(answer.id);
    if (!waiting) return;
    this.#waiting.delete(answer.id);
    if (this.#waiting.size === 0) this.#worker?.unref();
    if (answer.listing) waiting.resolve(entriesOf(answer.listing));
    else waiting.reject(errorOf(answer.error ?? { message: `no listing of ${waiting.dir}` }));
  }

  /** The worker is gone: what it was asked is read here, and so is everything after. */
  #fail(): void {
    this.#broken = true;
    this.#worker = undefined;
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const { dir, real, resolve, reject } of waiting) {
      try {
        resolve(entriesOf(listFolder(dir, real)));
      } catch (error) {
        reject(error);
      }
    }
  }
}

let reader: FolderReader | undefined;

/**
 * A folder's entries with their lstat, read on the shared worker thread. Fails like readdir (ENOENT, ENOTDIR, ...), also
 * for a folder of a set's tree that became a symlink (ENOTDIR), and with OutsideSetError (code EOUTSIDESET) for one
 * not at `real` (its path below the root's real path) any more; `real` undefined: a set's root, not checked.
 */
export function readFolder(dir: string, real?: string): Promise<FolderEntry[]> {
  reader ??= new FolderReader();
  return reader.read(dir, real);
}

/**
 * Starts the worker thread now, before the first folder is asked for: `tidemark run` starts it first thing, so that its
 * thread starts on another core while the agent's modules load, not after them at the first scan's first listing
 * (bench/notes.md, "the agent's start"). Resolves once the thread runs; reads fall back to this thread as before when
 * it cannot start.
 */
export function startFolderReader(): Promise<void> {
  reader ??= new FolderReader();
  return reader.start();
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === ROLE) {
  parentPort?.on("message", ({ id, dir, real }: { id: number; dir: string; real: string | undefined }) => {
    let answer: Answer;
    try {
      answer = { id, listing: listFolder(dir, real) };
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      answer = { id, error: { ...(e.code !== undefined ? { code: e.code } : {}), message: e.message } };
    }
    // The arrays were made here, on plain ArrayBuffers: they move to the scan without a copy.
    const transfer = answer.listing ? [answer.listing.kinds.buffer as ArrayBuffer, answer.listing.values.buffer as ArrayBuffer] : [];
    parentPort?.postMessage(answer, transfer);
  });
}
