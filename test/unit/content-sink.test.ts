// The changed bytes a delta spools: every byte reaches the spool file, also when a write takes fewer than it was given.

import { createHash, randomBytes } from "node:crypto";
import { open } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ContentSink } from "../../agent/chunk-delta.ts";
import { MAX_INLINE_DECODED_BYTES } from "../../contract/wire.ts";
import { tempDir } from "../support/tree.ts";

const dirs: { remove(): void }[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const dir of dirs.splice(0)) dir.remove();
});

describe("a delta's spooled content", () => {
  it("writes on what a short write left, so the spool file holds every byte offered", async () => {
    const dir = tempDir();
    dirs.push(dir);
    const spool = dir.path;
    const probe = await open(join(spool, "probe"), "w");
    const fileHandle = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<{ bytesWritten: number }> };
    await probe.close();
    const realWrite = fileHandle.write;
    let shortened = 0;
    vi.spyOn(fileHandle, "write").mockImplementation(function (this: unknown, ...args: unknown[]) {
      const [buffer, offset, length] = args as [Buffer, number | undefined, number | undefined];
      // Every write takes at most half of what it was given, as a filling disk may.
      const given = length ?? buffer.length - (offset ?? 0);
      if (given > 1) shortened++;
      return realWrite.call(this, buffer, offset ?? 0, Math.max(1, Math.floor(given / 2)));
    });
    const sink = new ContentSink(spool, Number.POSITIVE_INFINITY);
    const bytes = randomBytes(MAX_INLINE_DECODED_BYTES * 2 + 12_345);
    for (let at = 0; at < bytes.length; at += 4096) await sink.add(bytes.subarray(at, at + 4096));
    const { content, contentSha256 } = await sink.finish();
    expect(shortened).toBeGreaterThan(0);
    expect("spool" in content).toBe(true);
    const spooled = readFileSync(join(spool, (content as { spool: string }).spool));
    expect(spooled.length).toBe(bytes.length);
    expect(spooled.equals(bytes)).toBe(true);
    expect(contentSha256).toBe(createHash("sha256").update(bytes).digest("hex"));
  });
});
