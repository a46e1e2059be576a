// Small changes must not wait behind a large staged upload: a message ends
// before a record whose payload is large, so the records before it go at
// once; the large record goes in the next message once its upload is done,
// and records after it (FIFO) with it.
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Journal, type Change } from "../../agent/journal.ts";
import { LARGE_STAGED_BYTES } from "../../agent/staged-uploads.ts";
import { packNext, sendNext, STAGE_CONCURRENCY } from "../../agent/sender.ts";
import { BLOCK_SIZE, parseMessage } from "../../contract/wire.ts";
import type { StagedPayload, Transport } from "../../agent/transport/transport.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "docs";

/** The records of a message body, as `op path` (or `task id`). */
function recordsOf(body: string): string[] {
  const message = parseMessage(body);
  if (!("records" in message)) throw new Error("not a message of records");
  return message.records.map((r) => (r.op === "task" ? `task ${r.id}` : `${r.op} ${"path" in r ? r.path : r.seq}`));
}

/** A transport whose large payloads stay in upload until released; small ones are staged at once. */
class HeldLargeUploads implements Transport {
  /** The records of each message sent, as `op path` (or `task id`). */
  readonly messages: string[][] = [];
  readonly staged: string[] = [];
  #release: (() => void) | undefined;
  #started: (() => void) | undefined;
  /** Resolves once a large payload's upload has begun. */
  readonly largeStarted = new Promise<void>((resolve) => (this.#started = resolve));

  async stage(payload: StagedPayload): Promise<void> {
    this.staged.push(payload.key);
    if (payload.size <= LARGE_STAGED_BYTES) return;
    const released = new Promise<void>((resolve) => (this.#release = resolve));
    this.#started?.();
    await released;
  }

  async send(_set: string, _id: string, body: string): Promise<void> {
    this.messages.push(recordsOf(body));
  }

  release(): void {
    this.#release?.();
  }
}

let state: ReturnType<typeof tempDir>;
let journal: Journal;

beforeEach(() => {
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
});

afterEach(() => {
  journal.close();
  state.remove();
});

function small(path: string): Change {
  const bytes = Buffer.from(`content of ${path}`);
  return { op: "put", path, size: bytes.length, mode: 0o644, mtimeNs: "1", sha256: sha(path), content: { bytes } };
}

/** A spool file `size` bytes long (sparse: the transports here never read it). */
function sparse(name: string, size: number): void {
  writeFileSync(join(journal.spoolDir, name), "");
  truncateSync(join(journal.spoolDir, name), size);
}

/** A file whose content is spooled (as a large file's is), `size` bytes long (sparse: never read here). */
function spooled(path: string, size: number): Change {
  sparse(path, size);
  return { op: "put", path, size, mode: 0o644, mtimeNs: "1", sha256: sha(path), content: { spool: path } };
}

/** The records of each message the set's journal packs now, as `op path`, without sending them. */
function messages(): string[][] {
  const all: string[][] = [];
  for (let after = 0; ; ) {
    const packed = packNext(journal, SET, { compression: "none" }, after);
    if (!packed) return all;
    all.push(recordsOf(packed.body));
    after = packed.last;
  }
}

async function drain(transport: Transport): Promise<void> {
  while ((await sendNext(journal, transport, SET, { compression: "none" })).records > 0);
}

it("sends the records before a large staged file while its upload goes on; those after it wait for it", async () => {
  journal.append(SET, [small("a.txt"), small("b.txt"), spooled("big.bin", LARGE_STAGED_BYTES + 1), small("c.txt")]);
  const transport = new HeldLargeUploads();
  const draining = drain(transport);
  await transport.largeStarted;
  // The upload has not finished: the small files before it are on the queue, the one after it is not.
  expect(transport.messages).toEqual([["put a.txt", "put b.txt"]]);
  expect(journal.sets.counters(SET).sentSeq).toBe(2);
  transport.release();
  await draining;
  expect(transport.messages).toEqual([["put a.txt", "put b.txt"], ["put big.bin", "put c.txt"]]);
  expect(journal.sets.counters(SET).backlogRecords).toBe(0);
});

it("keeps payloads that are staged but not large in the message: packing many of them costs no extra message", () => {
  const medium = LARGE_STAGED_BYTES; // staged (not inline), at the bound: not large
  journal.append(SET, [small("a.txt"), spooled("m1.bin", medium), small("b.txt"), spooled("m2.bin", 1024 * 1024), small("c.txt")]);
  expect(messages()).toEqual([["put a.txt", "put m1.bin", "put b.txt", "put m2.bin", "put c.txt"]]);
});

it("adds at most one message per large staged file, none when the large file comes first, and none between large files in a row", () => {
  const large = LARGE_STAGED_BYTES + 1;
  journal.append(SET, [
    spooled("big-0.bin", large),
    small("a.txt"),
    small("b.txt"),
    spooled("big-1.bin", large),
    spooled("big-2.bin", large),
    spooled("big-3.bin", large),
    small("c.txt"),
    spooled("big-4.bin", large),
  ]);
  // big-1..3 upload together (no record in their message waits for them without its own); c.txt waits for them anyway.
  expect(messages()).toEqual([["put big-0.bin", "put a.txt", "put b.txt"], ["put big-1.bin", "put big-2.bin", "put big-3.bin", "put c.txt"], ["put big-4.bin"]]);
});

it("keeps large and medium staged files interleaved (as a scan journals them, at its end) in one message, uploading side by side", async () => {
  const MiB = 1024 * 1024;
  journal.append(SET, [small("a.txt"), ...Array.from({ length: 16 }, (_, i) => [spooled(`p${i}.raw`, 9 * MiB), spooled(`p${i}.jpg`, 2 * MiB)]).flat()]);
  expect(messages()).toHaveLength(1);
  let inFlight = 0;
  let most = 0;
  const transport: Transport = {
    async stage() {
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setImmediate(resolve));
      inFlight -= 1;
    },
    async send() {},
  };
  await drain(transport);
  expect(most).toBe(STAGE_CONCURRENCY);

  // Past LARGE_STAGED_BYTES one upload keeps its parts going by itself: each such file starts a message.
  journal.append(SET, [small("b.txt"), spooled("v0.mp4", LARGE_STAGED_BYTES + 1), spooled("v0.jpg", 2 * MiB), spooled("v1.mp4", LARGE_STAGED_BYTES + 1), spooled("v1.jpg", 2 * MiB)]);
  expect(messages()).toEqual([["put b.txt"], ["put v0.mp4", "put v0.jpg"], ["put v1.mp4", "put v1.jpg"]]);
});

it("goes by what a delta uploads, not the file's size: a few changed blocks of a large file ride with the message", () => {
  const fileSize = 8 * LARGE_STAGED_BYTES;
  const blocks = Math.ceil((LARGE_STAGED_BYTES + 1) / BLOCK_SIZE);
  const delta = (path: string, count: number): Change => {
    const uploaded = count * BLOCK_SIZE;
    sparse(path, uploaded);
    return {
      op: "put",
      path,
      size: fileSize,
      mode: 0o644,
      mtimeNs: "2",
      sha256: sha(`${path} new`),
      content: { spool: path },
      delta: { base: sha(`${path} old`), blocks: Array.from({ length: count }, (_, i) => i * 2), contentSha256: sha(`${path} blocks`) },
    };
  };
  journal.append(SET, [small("a.txt"), delta("db-few.sqlite", 2), small("b.txt"), delta("db-many.sqlite", blocks), small("c.txt")]);
  expect(messages()).toEqual([["put a.txt", "put db-few.sqlite", "put b.txt"], ["put db-many.sqlite", "put c.txt"]]);
});

it("ends the message before a marker whose staged list is large; a list staged small rides along", () => {
  const marker = (id: string, listSize: number): Change => {
    sparse(id, listSize);
    return {
      op: "task",
      id,
      fields: { action: "snapshot", timeoutSeconds: 0 },
      digest: { entries: 1, files: 1, bytes: 1, sha256: sha(`${id} digest`), list: { size: listSize, sha256: sha(`${id} list`) } },
      content: { spool: id },
    };
  };
  journal.append(SET, [small("a.txt"), marker("small-list", 1024 * 1024), small("b.txt"), marker("large-list", LARGE_STAGED_BYTES + 1), small("c.txt")]);
  expect(messages()).toEqual([["put a.txt", "task small-list", "put b.txt"], ["task large-list", "put c.txt"]]);
});
