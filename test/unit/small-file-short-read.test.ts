// agent/small-file-read.ts on a file system whose reads return fewer bytes than asked without being at the end (FUSE
// direct_io, some network file systems): the file is still read whole, and capture journals all of it.

import { appendFileSync, statSync, writeFileSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { capture } from "../../agent/capture.ts";
import { readSmallFile } from "../../agent/small-file-read.ts";
import { agentHarness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SHORT_READ_BYTES = 65_536;
/** Reads through a handle since the test began. */
let reads = 0;
/** Runs once after the next read (a writer that appends as the capture reads). */
let afterRead: (() => void) | undefined;

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const open = async (...args: Parameters<typeof actual.open>) => {
    const handle = await actual.open(...args);
    const read = handle.read.bind(handle);
    // Each read returns at most 64 KiB, as a short read may.
    Object.defineProperty(handle, "read", {
      value: (buffer: Buffer, offset: number, length: number, position: number) => {
        reads += 1;
        return read(buffer, offset, Math.min(length, SHORT_READ_BYTES), position).finally(() => {
          const after = afterRead;
          afterRead = undefined;
          after?.();
        });
      },
    });
    return handle;
  };
  return { ...actual, open };
});

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("tidemark-short-read-");
  reads = 0;
  afterRead = undefined;
});
afterEach(() => dir.remove());

describe("readSmallFile with short reads", () => {
  const bytes = Buffer.alloc(300_000, 7);

  it("reads an unchanged file whole though each read returns 64 KiB", async () => {
    const file = join(dir.path, "a.bin");
    writeFileSync(file, bytes);
    const read = await readSmallFile(file, statSync(file).size);
    expect(read.length).toBe(bytes.length);
    expect(read.equals(bytes)).toBe(true);
    // Five reads of at most 64 KiB hold the stat's 300,000 bytes, and reads that came back short go on to the end: a sixth.
    expect(reads).toBe(6);
    // A file one read returns whole (as a local file system's reads do) is read once: none past the stat's size.
    writeFileSync(file, bytes.subarray(0, 1000));
    reads = 0;
    expect((await readSmallFile(file, 1000)).equals(bytes.subarray(0, 1000))).toBe(true);
    expect(reads).toBe(1);
  });

  it("reads a file whole whose stat is stale (an attribute cache) at a short read's boundary", async () => {
    const file = join(dir.path, "a.bin");
    writeFileSync(file, bytes);
    // The stat says 128 KiB, where the second short read ends: the file holds more.
    expect((await readSmallFile(file, 2 * SHORT_READ_BYTES)).equals(bytes)).toBe(true);
  });

  it("reads a file that grew past its stat whole", async () => {
    const file = join(dir.path, "a.bin");
    writeFileSync(file, bytes);
    expect((await readSmallFile(file, 100_000)).equals(bytes)).toBe(true);
  });

  it("capture journals the whole content, not the first read's bytes", async () => {
    const h = agentHarness("app");
    try {
      writeFileSync(join(h.src.path, "a.bin"), bytes);
      const { changes } = await capture(h.journal, { name: "app", root: h.src.path, exclude: [] }, "a.bin");
      const put = changes.find((change) => change.op === "put");
      expect(put?.op === "put" ? put.size : undefined).toBe(bytes.length);
    } finally {
      await h.close();
    }
  });

  it("capture reads a file again that grew once the stat's bytes were read (no read looks past them): the stat after the read tells", async () => {
    const h = agentHarness("app");
    try {
      const file = join(h.src.path, "log.txt");
      writeFileSync(file, "first line\n");
      afterRead = () => appendFileSync(file, "second line\n");
      const { changes } = await capture(h.journal, { name: "app", root: h.src.path, exclude: [] }, "log.txt");
      const put = changes.find((change) => change.op === "put");
      expect(put?.op === "put" ? put.size : undefined).toBe("first line\nsecond line\n".length);
    } finally {
      await h.close();
    }
  });
});
