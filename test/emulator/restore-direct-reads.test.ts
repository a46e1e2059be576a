// A restore through the direct reads (RestoreS3Store over the HTTP/1 pool) -> ContentReader -> writer, with the
// bodies the writer has written given back and read into again by later answers: across files written at once and
// across two restores in one process. Every restored byte is compared with what was put.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { ContentReader } from "../../agent/restore-content.ts";
import { writeRecoveryPoint } from "../../agent/restore-writer.ts";
import { dataKey, META } from "../../contract/layout.ts";
import type { SnapshotEntry } from "../../contract/tasks.ts";
import { RestoreS3Store } from "../../lambdas/target/restore-store.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { tempDir } from "../support/tree.ts";

const MiB = 1024 * 1024;

describe("a restore through direct reads with given-back bodies", () => {
  it("restores every byte of large and mid-size files twice in one process, bodies written before read into again", async () => {
    const emulator = await startTestEmulator();
    const dir = tempDir("restore-direct-reads-");
    try {
      const client = new S3Client({
        region: "eu-west-1",
        endpoint: emulator.endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "x" },
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      });
      const store = new RestoreS3Store(client, emulator.newBucket(), {}, {});
      expect(await store.readsDirect()).toBe(true);
      // Large files of several parts (odd last parts), mid-size files of one GET, two of one length, a small one.
      const sizes = [40 * MiB + 3, 33 * MiB + 1, 24 * MiB, 17 * MiB + 5, 2 * MiB, 2 * MiB, 3 * MiB + 7, MiB + 1, 5 * MiB, 100_000];
      const files = new Map<string, Buffer>();
      const entries: SnapshotEntry[] = [];
      for (const [i, size] of sizes.entries()) {
        const body = randomBytes(size);
        const path = `f${i}.bin`;
        const sha256 = createHash("sha256").update(body).digest("hex");
        await store.put(dataKey("s", path), body, { [META.sha256]: sha256 });
        files.set(path, body);
        entries.push({ path, kind: "file", size, mode: 0o644, mtimeNs: "1000000000000", sha256 });
      }
      // A chunk the writer tells written that is one told before is a body given back and read into again.
      const told = new WeakSet<Uint8Array>();
      let again = 0;
      for (const round of [1, 2]) {
        const reader = new ContentReader(store, "s");
        const written = (chunk: Uint8Array) => {
          if (told.has(chunk)) again += 1;
          told.add(chunk);
          reader.written(chunk);
        };
        const report = await writeRecoveryPoint({ entries, content: (entry) => reader.read(entry), written }, join(dir.path, `out${round}`));
        expect(report.failures).toEqual([]);
        for (const [path, body] of files) expect([path, readFileSync(join(dir.path, `out${round}`, path)).equals(body)]).toEqual([path, true]);
      }
      expect(again).toBeGreaterThan(0);
    } finally {
      dir.remove();
      await emulator.server.stop();
    }
  });
});
