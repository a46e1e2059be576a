// A marker's snapshot checked end to end on the local cloud, with the CLI as a
// script runs it: a healthy set's snapshot is matched and verified (by the
// checksums its emulator proved on write, as on S3: no object is read); an object deleted or
// altered in the bucket behind the applier's back makes the next
// `tidemark task --wait` exit 3 naming the path, and `tidemark snapshots`
// shows it.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dataKey } from "../../contract/layout.ts";
import type { SnapshotSummary, TaskResult } from "../../contract/tasks.ts";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "app";
let cloud: TestCloud;
const work = tempDir();
const src = join(work.path, "src");
let config: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(join(src, "Docs"), { recursive: true });
  for (let i = 0; i < 12; i++) writeFileSync(join(src, "Docs", `file-${i}.txt`), `content ${i}\n`);
  writeFileSync(join(src, "README.md"), "the application's data\n");
  config = cloud.writeConfig(work.path, [{ name: SET, path: "src" }]);
});

afterAll(async () => {
  await cloud?.stop();
  work.remove();
});

const task = async () => {
  const run = await tidemark(["task", SET, "--wait", "--json", "--config", config]);
  return { code: run.code, stderr: run.stderr, result: (JSON.parse(run.stdout) as { result: TaskResult }).result };
};

describe("snapshot checks on the local cloud", () => {
  it("a healthy set's snapshot is succeeded, matched and verified", async () => {
    const { code, result } = await task();
    expect(code).toBe(0);
    expect(result).toMatchObject({ status: "succeeded", outputs: { files: 13, digest: "matched", verification: "verified" } });
    const [snapshot] = JSON.parse((await tidemark(["snapshots", SET, "--json", "--config", config])).stdout) as SnapshotSummary[];
    expect(snapshot?.verification).toMatchObject({ status: "verified", objects: 13, read: 0, byChecksum: 13 });
  });

  it("an object deleted behind the applier's back: the next task --wait exits 3 naming it", async () => {
    await cloud.store.delete(dataKey(SET, "README.md"));
    const { code, result } = await task();
    expect(code).toBe(3);
    expect(result).toMatchObject({ status: "failed", outputs: { digest: "mismatch" } });
    expect(result.error).toContain("README.md: missing on the target");
    const listed = (await tidemark(["snapshots", SET, "--config", config])).stdout;
    expect(listed).toMatch(/\n\S+ .* MISMATCH \(1 paths\) +verified\n$/);
    // status does not call the set in sync while its newest recovery point is not what the source held.
    const status = await tidemark(["status", "--config", config]);
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/failed its checks: its digest does not match what the source held/);
  });

  it("an object altered behind the applier's back (metadata kept): the next task --wait exits 3 naming it", async () => {
    // The source writes README.md again: its put brings it back, and the set matches once more.
    writeFileSync(join(src, "README.md"), "the application's data, again\n");
    expect((await task()).code).toBe(0);
    const key = dataKey(SET, "Docs/file-3.txt");
    const head = await cloud.store.head(key);
    await cloud.store.put(key, Buffer.from("content X\n"), head?.meta);
    const { code, result } = await task();
    expect(code).toBe(3);
    expect(result.error).toContain("Docs/file-3.txt");
    const snapshots = JSON.parse((await tidemark(["snapshots", SET, "--json", "--config", config])).stdout) as SnapshotSummary[];
    expect(snapshots.at(-1)?.verification).toMatchObject({ status: "failed", failures: [{ path: "Docs/file-3.txt", key }] });
    expect((await tidemark(["snapshots", SET, "--config", config])).stdout).toMatch(/matched +FAILED \(1 of \d+\)\n$/);
  });
});
