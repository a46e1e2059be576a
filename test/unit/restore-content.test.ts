// A snapshot's content streamed back from the bucket: a large file in ranged
// parts (a bounded few fetched ahead, each part in memory only until written),
// every file checked against its sha256 as it streams (an altered object,
// whole or in one part, is a failure naming the file and leaves nothing at its
// name), the progress moving while a large file streams, and the requests.

import { createHash, randomBytes } from "node:crypto";
import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ContentReader } from "../../agent/restore-content.ts";
import { restoreSnapshot } from "../../agent/restore.ts";
import { writeRecoveryPoint } from "../../agent/restore-writer.ts";
import type { Progress } from "../../agent/operations.ts";
import { dataKey, encodeMeta } from "../../contract/layout.ts";
import type { SnapshotEntry } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { ObjectStream, ReadStreamOptions } from "../../lambdas/store/store.ts";
import { readManifest, takeSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { tempDir } from "../support/tree.ts";

const SET = "app";
const MiB = 1024 * 1024;
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** A memory store that logs each streamed read ("key" or "key@offset+length") and how many bodies were open at once. */
class ReadLog extends MemoryStore {
  readonly reads: string[] = [];
  open = 0;
  maxOpen = 0;
  override async readStream(key: string, options: ReadStreamOptions = {}): Promise<ObjectStream | undefined> {
    this.reads.push(options.offset !== undefined ? `${key}@${options.offset}+${options.length ?? 0}` : key);
    const stream = await super.readStream(key, options);
    if (!stream) return undefined;
    this.open += 1;
    this.maxOpen = Math.max(this.maxOpen, this.open);
    const close = () => (this.open -= 1);
    const body = stream.body;
    return {
      ...stream,
      body: (async function* () {
        try {
          yield* body;
        } finally {
          close();
        }
      })(),
    };
  }
}

async function putFile(store: MemoryStore, path: string, body: Uint8Array): Promise<void> {
  await store.put(dataKey(SET, path), body, encodeMeta({ kind: "file", mode: 0o640, mtimeNs: "1700000000123456789", sha256: sha256(body) }));
}

async function snapshot(store: MemoryStore) {
  return takeSnapshot(store, SET, { id: "snap-1", taskId: "t1", seq: null }, { now: new Date() });
}

/** Names of temp files left anywhere below root. */
function temps(root: string): string[] {
  return readdirSync(root, { recursive: true, encoding: "utf8" }).filter((name) => name.split("/").some((part) => part.startsWith(".tm-")));
}

describe("restore content, streamed", () => {
  let out: ReturnType<typeof tempDir>;
  beforeEach(() => {
    out = tempDir("tidemark-restore-content-");
  });
  afterEach(() => out.remove());

  it.each([
    ["an unversioned bucket", false],
    ["a versioned bucket", true],
  ])("reads a large file in ranged parts of the version the snapshot names, and small files with one GET each (%s)", async (_name, versioned) => {
    const store = new ReadLog({ versioned });
    const big = randomBytes(17 * MiB + 5);
    await putFile(store, "big.bin", big);
    await putFile(store, "small.txt", Buffer.from("small"));
    await putFile(store, "empty", Buffer.alloc(0));
    const summary = await snapshot(store);
    // Replaced after the snapshot: the restore must still read the snapshot's bytes, in every part.
    if (versioned) await putFile(store, "big.bin", randomBytes(17 * MiB + 5));
    store.reads.length = 0;

    const to = join(out.path, "r");
    const result = await restoreSnapshot(store, summary, to);
    expect(result.failures).toEqual([]);
    expect(sha256(readFileSync(join(to, "big.bin")))).toBe(sha256(big));
    expect(readFileSync(join(to, "small.txt"), "utf8")).toBe("small");
    expect(lstatSync(join(to, "empty")).size).toBe(0);
    expect(lstatSync(join(to, "big.bin")).mode & 0o7777).toBe(0o640);
    const key = dataKey(SET, "big.bin");
    // 8 MiB parts; the empty file needs no request at all.
    expect(store.reads.sort()).toEqual([`${key}@0+${8 * MiB}`, `${key}@${16 * MiB}+${MiB + 5}`, `${key}@${8 * MiB}+${8 * MiB}`, dataKey(SET, "small.txt")].sort());
  });

  it("holds at most the parts fetched ahead in memory: a 40-part file with 2 ahead never has more than 3 bodies open", async () => {
    const store = new ReadLog();
    const body = randomBytes(40 * 64 * 1024);
    await putFile(store, "big.bin", body);
    const entries = await readManifest(store, await snapshot(store));
    const reader = new ContentReader(store, SET, { partBytes: 64 * 1024, rangedAbove: 64 * 1024, partsAhead: 2 });
    const report = await writeRecoveryPoint({ entries, content: (entry: SnapshotEntry) => reader.read(entry) }, join(out.path, "r"));
    expect(report.failures).toEqual([]);
    expect(store.reads).toHaveLength(40);
    expect(store.maxOpen).toBeLessThanOrEqual(3);
    expect(sha256(readFileSync(join(out.path, "r", "big.bin")))).toBe(sha256(body));
  });

  it("an object altered in the bucket, same size, fails its file by name with both sha256s, leaves nothing at its name, and the rest is restored", async () => {
    const store = new MemoryStore();
    await putFile(store, "good.txt", Buffer.from("good"));
    await putFile(store, "bad.txt", Buffer.from("original"));
    const summary = await snapshot(store);
    const meta = (await store.get(dataKey(SET, "bad.txt")))?.meta ?? {};
    await store.put(dataKey(SET, "bad.txt"), Buffer.from("ORIGINAL"), meta);

    const to = join(out.path, "r");
    const result = await restoreSnapshot(store, summary, to);
    expect(result.failures).toEqual([
      { path: "bad.txt", reason: `the content read has sha256 ${sha256(Buffer.from("ORIGINAL"))}, the recovery point's ${sha256(Buffer.from("original"))} (altered in the bucket?); not restored` },
    ]);
    expect(result.files).toBe(1);
    expect(result.bytes).toBe(4);
    expect(() => lstatSync(join(to, "bad.txt"))).toThrow(/ENOENT/);
    expect(readFileSync(join(to, "good.txt"), "utf8")).toBe("good");
    expect(temps(to)).toEqual([]);
  });

  it("one altered part of a large file fails the file by name and leaves no partial file, its bytes taken off the progress", async () => {
    const store = new MemoryStore({ versioned: true });
    const big = randomBytes(20 * MiB);
    await putFile(store, "big.bin", big);
    const summary = await snapshot(store);
    // The version the snapshot names, altered in place in its last part.
    const stored = await store.get(dataKey(SET, "big.bin"));
    stored?.body.writeUInt32BE(0xdeadbeef, 19 * MiB);

    const to = join(out.path, "r");
    const seen: Progress[] = [];
    const result = await restoreSnapshot(store, summary, to, { onProgress: (p) => seen.push(p) });
    expect(result.failures).toEqual([{ path: "big.bin", reason: expect.stringMatching(/^the content read has sha256 [0-9a-f]{64}, the recovery point's [0-9a-f]{64}/) }]);
    expect(result.files).toBe(0);
    expect(() => lstatSync(join(to, "big.bin"))).toThrow(/ENOENT/);
    expect(temps(to)).toEqual([]);
    const bytes = seen.map((p) => (p.phase === "restore" ? p.bytes : 0));
    // The bar moved while the file streamed, and ends without its bytes.
    expect(Math.max(...bytes)).toBeGreaterThanOrEqual(16 * MiB);
    expect(bytes.at(-1)).toBe(0);
  });

  it("a large file shorter in the bucket than in the snapshot fails by name before anything is written", async () => {
    const store = new MemoryStore({ versioned: true });
    await putFile(store, "big.bin", randomBytes(20 * MiB));
    const summary = await snapshot(store);
    const stored = await store.get(dataKey(SET, "big.bin"));
    if (!stored) throw new Error("no object");
    Object.assign(stored, { body: stored.body.subarray(0, 12 * MiB) });

    const result = await restoreSnapshot(store, summary, join(out.path, "r"));
    expect(result.failures).toEqual([{ path: "big.bin", reason: `big.bin: ${dataKey(SET, "big.bin")} holds ${12 * MiB} bytes, the recovery point's file ${20 * MiB}` }]);
  });

  it("content neither live nor preserved is a failure naming the file", async () => {
    const store = new MemoryStore();
    await putFile(store, "gone.txt", Buffer.from("gone"));
    const summary = await snapshot(store);
    await store.delete(dataKey(SET, "gone.txt"));
    const result = await restoreSnapshot(store, summary, join(out.path, "r"));
    expect(result.failures).toEqual([{ path: "gone.txt", reason: expect.stringContaining("gone.txt: its content (sha256 ") }]);
  });
});
