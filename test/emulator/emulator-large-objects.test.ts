// A persisted emulator keeps bodies over LARGE_BODY_BYTES in files beside its
// database (SQLite refuses BLOBs over 1,000,000,000 bytes): such an object
// reads back whole, survives a restart, and its file goes when the object is
// replaced by a small one or deleted.

import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { LARGE_BODY_BYTES } from "../../lambdas/local/emulator-large-objects.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { tempDir } from "../support/tree.ts";

const dir = tempDir();
let emulator: Emulator | undefined;

afterEach(async () => {
  await emulator?.stop();
  emulator = undefined;
});
afterAll(() => dir.remove());

async function open(): Promise<{ store: S3Store; files: () => string[] }> {
  emulator = await startEmulator({ port: 0, dataDir: dir.path });
  const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1" });
  const store = new S3Store(makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), bucket);
  const files = () => {
    try {
      return readdirSync(join(dir.path, "large-objects", bucket));
    } catch {
      return [];
    }
  };
  return { store, files };
}

describe("large bodies on a persisted emulator", () => {
  // One test: each step needs the emulator's folder as the one before left it.
  const body = randomBytes(LARGE_BODY_BYTES + 12_345);

  it("keeps a large body in a file, reads it back whole also after a restart, and drops the file with the body", async () => {
    const first = await open();
    await first.store.put("data/s/Big File ü", body, { "tidemark-kind": "file" });
    expect(first.files()).toHaveLength(1);
    expect((await first.store.get("data/s/Big File ü"))?.body.equals(body)).toBe(true);
    await first.store.copy("data/s/Big File ü", "data/s/copy", { "tidemark-kind": "copy" });
    expect(first.files()).toHaveLength(2);
    await emulator?.stop();

    const second = await open();
    const object = await second.store.get("data/s/Big File ü");
    expect(object?.body.equals(body)).toBe(true);
    expect(object?.meta).toMatchObject({ "tidemark-kind": "file" });
    expect((await second.store.head("data/s/copy"))?.size).toBe(body.length);

    // A small body replacing the object, and a deletion, take the files along.
    const { store, files } = second;
    await store.put("data/s/Big File ü", Buffer.from("small now"));
    expect((await store.get("data/s/Big File ü"))?.body.toString()).toBe("small now");
    expect(files()).toHaveLength(1);
    await store.delete("data/s/copy");
    expect(files()).toEqual([]);
    expect(await store.get("data/s/copy")).toBeUndefined();
  });
});

