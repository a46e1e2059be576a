// agent/small-file-read.ts: a small file in one read of its stat's size, whole whatever happened since the stat.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readSmallFile } from "../../agent/small-file-read.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("tidemark-small-read-");
});
afterEach(() => dir.remove());

describe("readSmallFile", () => {
  const bytes = Buffer.from("the content of a small file\n".repeat(100));

  it("reads a file of the stat's size whole, and an empty one", async () => {
    const file = join(dir.path, "a.txt");
    writeFileSync(file, bytes);
    expect((await readSmallFile(file, bytes.length)).equals(bytes)).toBe(true);
    writeFileSync(file, "");
    expect((await readSmallFile(file, 0)).length).toBe(0);
  });

  it("reads a file that grew past its stat whole, and one that shrank as it is now", async () => {
    const file = join(dir.path, "a.txt");
    writeFileSync(file, bytes);
    // The stat said fewer bytes than the file holds by the read: all of them, not the stat's size of them.
    expect((await readSmallFile(file, 10)).equals(bytes)).toBe(true);
    expect((await readSmallFile(file, bytes.length - 1)).equals(bytes)).toBe(true);
    expect((await readSmallFile(file, bytes.length * 2)).equals(bytes)).toBe(true);
  });

  it("throws the system's error for a file that is gone", async () => {
    await expect(readSmallFile(join(dir.path, "gone"), 5)).rejects.toMatchObject({ code: "ENOENT" });
  });
});
