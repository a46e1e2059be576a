// A restore gives each chunk of a file's bytes back once it is written
// (RecoveryPoint.written), so the reads can fill the same memory again: the
// writer must have written a chunk before it says so, and hold it no more.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { writeRecoveryPoint } from "../../agent/restore-writer.ts";
import { fileEntryOf as entryOf } from "../support/content.ts";
import { tempDir } from "../support/tree.ts";

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

describe("chunks given back as they are written", () => {
  it("tells each chunk once, after its bytes are in the file: a chunk overwritten when told leaves the file exact", async () => {
    const dir = tempDir("tidemark-chunk-reuse-");
    dirs.push(dir);
    // Chunks of 3 MiB (written one by one, each over the writer's 1 MiB batch), of 100 KiB (batched) and a small file's one.
    const bodies = new Map([
      ["big.bin", randomBytes(7 * 1024 * 1024 + 5)],
      ["mid.bin", randomBytes(1_000_000)],
      ["small.txt", Buffer.from("a small file")],
    ]);
    const chunkBytes = new Map([["big.bin", 3 * 1024 * 1024], ["mid.bin", 100 * 1024], ["small.txt", 64]]);
    const given = new Set<Uint8Array>();
    let told = 0;
    const report = await writeRecoveryPoint(
      {
        entries: [...bodies].map(([path, body]) => entryOf(path, body)),
        content: async (entry) => {
          const body = bodies.get(entry.path) ?? Buffer.alloc(0);
          const step = chunkBytes.get(entry.path) ?? 1;
          // Copies, as a read's buffers are its own: the test may scribble on them.
          return (async function* () {
            for (let at = 0; at < body.length; at += step) {
              const chunk = Buffer.from(body.subarray(at, at + step));
              given.add(chunk);
              yield chunk;
            }
          })();
        },
        written: (chunk) => {
          expect(given.delete(chunk)).toBe(true);
          told += 1;
          // As a later read filling the same memory would.
          chunk.fill(0);
        },
      },
      join(dir.path, "out"),
    );
    expect(report.failures).toEqual([]);
    for (const [path, body] of bodies) expect(readFileSync(join(dir.path, "out", path)).equals(body)).toBe(true);
    // Every chunk told, none twice (a second time would not find it in `given`).
    expect(given.size).toBe(0);
    expect(told).toBe(3 + 10 + 1);
  });
});

describe("the recovery point told when the restore is over", () => {
  it("calls finished() once, after the last write, whether the restore succeeded or was stopped", async () => {
    const dir = tempDir("tidemark-chunk-finished-");
    dirs.push(dir);
    const body = Buffer.from("one file");
    const events: string[] = [];
    const point = (onContent: () => void) => ({
      entries: [entryOf("a.txt", body), entryOf("b.txt", body)],
      content: async () => {
        onContent();
        events.push("content");
        return body;
      },
      finished: () => events.push("finished"),
    });
    await writeRecoveryPoint(point(() => undefined), join(dir.path, "done"));
    expect(events).toEqual(["content", "content", "finished"]);
    events.length = 0;
    const stop = new AbortController();
    await expect(writeRecoveryPoint(point(() => stop.abort()), join(dir.path, "stopped"), { signal: stop.signal })).rejects.toThrow();
    expect(events.filter((e) => e === "finished")).toEqual(["finished"]);
    expect(events.at(-1)).toBe("finished");
  });
});
