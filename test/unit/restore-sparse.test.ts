// A restored file's zero ranges are left as holes: a sparse file (a VM image, a database with holes) comes back about
// as sparse as it was, not fully allocated, and still holds every byte (the writer's sha256 and the comparison here).

import { randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { dataRuns, writeRecoveryPoint } from "../../agent/restore-writer.ts";
import { fileEntryOf as entryOf } from "../support/content.ts";
import { tempDir } from "../support/tree.ts";

const MiB = 1024 * 1024;
const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

/** `body` in chunks of `size` bytes (the last one shorter), as reads deliver them. */
async function* chunksOf(body: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < body.length; at += size) yield await Promise.resolve(body.subarray(at, at + size));
}

describe("sparse files restored", () => {
  it("leaves zero runs as holes (fewer allocated blocks), a hole at the end too, and every byte as it was", async () => {
    const dir = tempDir("tidemark-sparse-");
    dirs.push(dir);
    // 32 MiB: data, 20 MiB of zeros, data, 6 MiB of zeros to the end; data with a few zero bytes and a short zero run inside.
    const holed = Buffer.alloc(32 * MiB);
    randomBytes(3 * MiB).copy(holed, 0);
    randomBytes(3 * MiB + 12_345).copy(holed, 23 * MiB);
    holed.fill(0, MiB, MiB + 3000);
    const bodies = new Map([
      // Chunks of odd sizes: pieces of the zero runs are cut by chunk edges as well as by block boundaries.
      ["vm.img", { body: holed, chunk: 100_003 }],
      ["parts.img", { body: holed, chunk: 8 * MiB }],
      ["zeros.bin", { body: Buffer.alloc(5 * MiB + 7), chunk: 65_536 }],
      ["data.bin", { body: randomBytes(2 * MiB), chunk: 1 * MiB }],
    ]);
    const entries = [...bodies].map(([path, { body }]) => entryOf(path, body));
    const report = await writeRecoveryPoint({ entries, content: (entry) => Promise.resolve(chunksOf(bodies.get(entry.path)?.body ?? Buffer.alloc(0), bodies.get(entry.path)?.chunk ?? 1)) }, dir.path);
    expect(report.failures).toEqual([]);
    for (const [path, { body }] of bodies) expect([path, readFileSync(join(dir.path, path)).equals(body)]).toEqual([path, true]);
    const allocated = (path: string) => statSync(join(dir.path, path)).blocks * 512;
    // 6 MiB and some of data: the 26 MiB of zeros take no disk (a little slack for the filesystem's own blocks).
    expect([allocated("vm.img") < 7 * MiB, allocated("parts.img") < 7 * MiB, allocated("zeros.bin") < 64 * 1024]).toEqual([true, true, true]);
    expect([statSync(join(dir.path, "vm.img")).size, statSync(join(dir.path, "zeros.bin")).size]).toEqual([32 * MiB, 5 * MiB + 7]);
    expect(allocated("data.bin")).toBeGreaterThanOrEqual(2 * MiB);
  });

  it("writes every byte that is not zero at its offset, whatever the chunks' edges and the file's offset", () => {
    // Bytes with zero runs of many lengths at many offsets, cut into chunks of many sizes, from several positions in a file.
    // A seeded generator: a failure comes again on the next run.
    let seed = 17;
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return Math.floor((seed / 2 ** 31) * n);
    };
    for (let round = 0; round < 200; round++) {
      const bytes = Buffer.alloc(random(400_000) + 1);
      for (let at = 0; at < bytes.length; ) {
        const run = random(3) === 0 ? random(200_000) : random(20_000);
        const kind = random(3);
        // Data, zeros, or zeros with a byte of data here and there (the three bytes allZero looks at first may be zero).
        if (kind === 0) bytes.fill(random(255) + 1, at, Math.min(at + run, bytes.length));
        else if (kind === 1) for (let i = at; i < Math.min(at + run, bytes.length); i += random(5000) + 1) bytes[i] = random(255) + 1;
        at += run;
      }
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < bytes.length; ) {
        const size = random(3) === 0 ? random(10) + 1 : random(150_000) + 1;
        chunks.push(bytes.subarray(at, at + size));
        at += size;
      }
      const position = random(3) * 65_536 + random(2) * random(70_000);
      const file = Buffer.alloc(bytes.length);
      let previousEnd = -1;
      for (const run of dataRuns(chunks, position)) {
        // Runs in order, a hole of 4 KiB at least between two (else they would be one); holes only where bytes are zero (below).
        if (previousEnd >= 0) expect(run.at - previousEnd >= 4096).toBe(true);
        let at = run.at - position;
        for (const buffer of run.buffers) {
          Buffer.from(buffer).copy(file, at);
          at += buffer.length;
        }
        previousEnd = run.at + run.buffers.reduce((sum, b) => sum + b.length, 0);
      }
      expect(file.equals(bytes)).toBe(true);
    }
  });
});
