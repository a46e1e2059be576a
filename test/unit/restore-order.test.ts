// A restore starts its largest files first: a large file's ranged parts then
// stream beside the many small files' GETs instead of alone after them.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WRITE_CONCURRENCY, writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { tempDir } from "../support/tree.ts";

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

function file(path: string, text: string): [RecoveryEntry, Buffer] {
  const body = Buffer.from(text);
  return [{ path, kind: "file", size: body.length, mode: 0o644, mtimeNs: "1000000000000", sha256: createHash("sha256").update(body).digest("hex") }, body];
}

describe("the order files are restored in", () => {
  it("starts the largest file before any small file listed before it is done", async () => {
    const dir = tempDir("tidemark-order-");
    dirs.push(dir);
    const to = join(dir.path, "out");
    // More small files than are written at once, all listed before the large one.
    const files = [...Array.from({ length: WRITE_CONCURRENCY + 8 }, (_, i) => file(`s${String(i).padStart(3, "0")}.txt`, `small ${i}`)), file("z.bin", "z".repeat(100_000))];
    const bodies = new Map(files.map(([entry, body]) => [entry.path, body]));
    // Small files wait until the large one has started, or until every slot holds a waiting small file (the
    // listing's order), so the test ends either way and tells which happened.
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let waiting = 0;
    let smallDone = 0;
    let largeStartedWith: number | undefined;
    const report = await writeRecoveryPoint(
      {
        entries: files.map(([entry]) => entry),
        content: async (entry) => {
          if (entry.path === "z.bin") {
            largeStartedWith = smallDone;
            release();
          } else {
            waiting += 1;
            if (waiting >= WRITE_CONCURRENCY) release();
            await gate;
            smallDone += 1;
          }
          return bodies.get(entry.path) ?? Buffer.alloc(0);
        },
      },
      to,
    );
    expect(report.failures).toEqual([]);
    expect(report.files).toBe(files.length);
    expect(largeStartedWith).toBe(0);
    expect(readFileSync(join(to, "z.bin")).equals(bodies.get("z.bin") ?? Buffer.alloc(0))).toBe(true);
  });
});
