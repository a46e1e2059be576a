// A file's content read from an unversioned bucket while the applier goes on:
// later parts of a large file ask for the first GET's ETag, and a live object
// replaced meanwhile has the rest read from the preserved copy (or fails the
// file, naming why, when there is none); a live object whose bytes are not
// its metadata's sha256 has the file read again from the preserved copy; and
// a body cut off mid-way (a reset connection) is read on from where it
// stopped, a few times, before the file fails.

import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ContentReader } from "../../agent/restore-content.ts";
import { restoreSnapshot } from "../../agent/restore.ts";
import { takeSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { writeRecoveryPoint } from "../../agent/restore-writer.ts";
import { dataKey, encodeMeta, META, preservedKey } from "../../contract/layout.ts";
import type { SnapshotEntry } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { SourceChangedError, type ObjectStream, type ReadStreamOptions } from "../../lambdas/store/store.ts";
import { fileEntryOf, sha256Of as sha256 } from "../support/content.ts";
import { tempDir } from "../support/tree.ts";

const SET = "app";
const KiB = 1024;
/** Small parts, so a file of a few hundred KiB is read in several. */
const PARTS = { rangedAbove: 128 * KiB, partBytes: 64 * KiB, partsAhead: 2 };

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

function outDir(): string {
  const dir = tempDir("tidemark-content-");
  dirs.push(dir);
  return join(dir.path, "out");
}

/** A memory store that runs `after` once its n-th streamed read is made, and logs each read ("key@offset"). */
class Scripted extends MemoryStore {
  readonly reads: string[] = [];
  hooks = new Map<number, () => Promise<void>>();
  /** Reads (by number) whose body breaks off, as a reset connection, after this many bytes. */
  resets = new Map<number, number>();
  override async readStream(key: string, options: ReadStreamOptions = {}): Promise<ObjectStream | undefined> {
    this.reads.push(`${key.slice(key.lastIndexOf("/") + 1)}@${options.offset ?? 0}${options.ifMatch !== undefined ? "?" : ""}`);
    const n = this.reads.length;
    const stream = await super.readStream(key, options);
    await this.hooks.get(n)?.();
    const cut = this.resets.get(n);
    if (!stream || cut === undefined) return stream;
    const body = stream.body;
    return {
      ...stream,
      body: (async function* () {
        let sent = 0;
        for await (const chunk of body) {
          if (sent + chunk.length > cut) {
            yield chunk.subarray(0, cut - sent);
            throw Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
          }
          sent += chunk.length;
          yield chunk;
        }
      })(),
    };
  }
}

async function putLive(store: MemoryStore, path: string, body: Uint8Array, metaSha = sha256(body)): Promise<void> {
  await store.put(dataKey(SET, path), body, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1000000000", sha256: metaSha }));
}

async function putPreserved(store: MemoryStore, body: Uint8Array): Promise<void> {
  await store.put(preservedKey(SET, sha256(body)), body, { [META.sha256]: sha256(body) });
}

async function restore(store: MemoryStore, entry: SnapshotEntry) {
  const reader = new ContentReader(store, SET, PARTS);
  const to = outDir();
  const report = await writeRecoveryPoint({ entries: [entry], content: (e) => reader.read(e), reread: (e) => reader.reread(e) }, to);
  return { to, report };
}

describe("a large file's live object replaced while its parts are read (unversioned bucket)", () => {
  it("reads the rest from the preserved copy", async () => {
    const store = new Scripted();
    const old = randomBytes(400 * KiB);
    await putLive(store, "big.bin", old);
    await putPreserved(store, old);
    store.hooks.set(1, () => putLive(store, "big.bin", randomBytes(400 * KiB)));
    const { to, report } = await restore(store, fileEntryOf("big.bin", old, "1000000000"));
    expect(report.failures).toEqual([]);
    expect(readFileSync(join(to, "big.bin")).equals(old)).toBe(true);
    // Later parts asked for the first GET's ETag; refused, they read the preserved copy.
    expect(store.reads[1]).toBe("big.bin@65536?");
    expect(store.reads.some((r) => r.startsWith(sha256(old)))).toBe(true);
  });

  it("fails the file, saying so, when no preserved copy holds its content; nothing at its name", async () => {
    const store = new Scripted();
    const old = randomBytes(400 * KiB);
    await putLive(store, "big.bin", old);
    store.hooks.set(1, () => putLive(store, "big.bin", randomBytes(400 * KiB)));
    const { to, report } = await restore(store, fileEntryOf("big.bin", old, "1000000000"));
    expect(report.failures).toEqual([{ path: "big.bin", reason: expect.stringMatching(/big\.bin: .*changed while it was read .*no preserved copy/) as string }]);
    expect(readdirSync(to)).toEqual([]);
  });
});

describe("a live object whose bytes are not its metadata's sha256", () => {
  it("is read again from the preserved copy", async () => {
    const store = new Scripted();
    const body = randomBytes(20 * KiB);
    await putLive(store, "f.txt", randomBytes(20 * KiB), sha256(body));
    await putPreserved(store, body);
    const { to, report } = await restore(store, fileEntryOf("f.txt", body, "1000000000"));
    expect(report.failures).toEqual([]);
    expect(readFileSync(join(to, "f.txt")).equals(body)).toBe(true);
    expect(report.bytes).toBe(body.length);
  });

  it("is read again from the preserved copy by a snapshot's restore (it asks the reader to)", async () => {
    const store = new Scripted();
    const body = randomBytes(20 * KiB);
    await putLive(store, "f.txt", randomBytes(20 * KiB), sha256(body));
    await putPreserved(store, body);
    const summary = await takeSnapshot(store, SET, { id: "snap-1", taskId: "t1", seq: null }, { now: new Date() });
    const to = outDir();
    const report = await restoreSnapshot(store, summary, to);
    expect(report.failures).toEqual([]);
    expect(readFileSync(join(to, "f.txt")).equals(body)).toBe(true);
  });

  it("fails the file when no preserved copy holds it either", async () => {
    const store = new Scripted();
    const body = randomBytes(20 * KiB);
    await putLive(store, "f.txt", randomBytes(20 * KiB), sha256(body));
    const { to, report } = await restore(store, fileEntryOf("f.txt", body, "1000000000"));
    expect(report.failures).toEqual([{ path: "f.txt", reason: expect.stringMatching(/the content read has sha256 \w+, the recovery point's \w+ \(altered in the bucket\?\)/) as string }]);
    expect(readdirSync(to)).toEqual([]);
  });
});

describe("a body cut off mid-way", () => {
  it("is read on with a ranged GET from where it stopped (a small file and a large file's parts)", async () => {
    const store = new Scripted();
    const small = randomBytes(50 * KiB);
    const big = randomBytes(300 * KiB);
    await putLive(store, "small.bin", small);
    await putLive(store, "big.bin", big);
    store.resets.set(1, 10_000);
    store.resets.set(2, 1000);
    const reader = new ContentReader(store, SET, PARTS);
    const to = outDir();
    const report = await writeRecoveryPoint({ entries: [fileEntryOf("small.bin", small, "1000000000")], content: (e) => reader.read(e) }, to);
    expect(report.failures).toEqual([]);
    expect(store.reads.slice(0, 3)).toEqual(["small.bin@0", "small.bin@10000?", "small.bin@11000?"]);
    expect(readFileSync(join(to, "small.bin")).equals(small)).toBe(true);

    store.reads.length = 0;
    store.resets.clear();
    store.resets.set(3, 5000);
    const to2 = outDir();
    const report2 = await writeRecoveryPoint({ entries: [fileEntryOf("big.bin", big, "1000000000")], content: (e) => reader.read(e) }, to2);
    expect(report2.failures).toEqual([]);
    expect(readFileSync(join(to2, "big.bin")).equals(big)).toBe(true);
    expect(store.reads).toContain(`big.bin@${2 * 64 * KiB + 5000}?`);
  });

  it("fails the file after a few tries", async () => {
    const store = new Scripted();
    const small = randomBytes(50 * KiB);
    await putLive(store, "small.bin", small);
    for (let n = 1; n <= 10; n++) store.resets.set(n, 100);
    const { to, report } = await restore(store, fileEntryOf("small.bin", small, "1000000000"));
    expect(report.failures).toEqual([{ path: "small.bin", reason: "read ECONNRESET" }]);
    expect(store.reads).toHaveLength(4);
    expect(readdirSync(to)).toEqual([]);
  });
});

describe("MemoryStore.readStream with ifMatch", () => {
  it("reads while the ETag is the one asked for, else throws SourceChangedError", async () => {
    const store = new MemoryStore();
    await store.put("k", Buffer.from("one"));
    const first = await store.readStream("k");
    if (!first?.etag) throw new Error("no ETag");
    expect((await store.readStream("k", { ifMatch: first.etag, offset: 1, length: 2 }))?.size).toBe(3);
    await store.put("k", Buffer.from("two"));
    await expect(store.readStream("k", { ifMatch: first.etag })).rejects.toThrow(SourceChangedError);
  });
});

describe("a live object whose bytes are not its metadata's sha256, read in part from elsewhere", () => {
  it("a large file whose later parts switched to the preserved copy is read again from the preserved copy", async () => {
    const store = new Scripted();
    const body = randomBytes(400 * KiB);
    // The first part comes from a live object whose bytes are not what its metadata says; then it is replaced.
    await putLive(store, "big.bin", randomBytes(400 * KiB), sha256(body));
    await putPreserved(store, body);
    store.hooks.set(1, () => putLive(store, "big.bin", randomBytes(400 * KiB)));
    const { to, report } = await restore(store, fileEntryOf("big.bin", body, "1000000000"));
    expect(report.failures).toEqual([]);
    expect(readFileSync(join(to, "big.bin")).equals(body)).toBe(true);
    expect(store.reads.filter((r) => r === `${sha256(body)}@0`)).toHaveLength(1);
  });

  it("on a versioned bucket, an entry naming no version is read again from the preserved copy", async () => {
    const store = new Scripted({ versioned: true });
    const body = randomBytes(20 * KiB);
    await putLive(store, "f.txt", randomBytes(20 * KiB), sha256(body));
    await putPreserved(store, body);
    const { to, report } = await restore(store, fileEntryOf("f.txt", body, "1000000000"));
    expect(report.failures).toEqual([]);
    expect(readFileSync(join(to, "f.txt")).equals(body)).toBe(true);
  });
});
