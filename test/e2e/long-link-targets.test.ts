// Symlinks whose targets are too long for S3's 2 KB of object metadata once
// URI-encoded (a 4,000-byte path; 3,600 bytes of multi-byte and escaped
// characters), on the local cloud, which refuses oversize metadata as S3
// does: they replicate (the target in the object's body, a flag in its
// metadata), survive a rename, and come back exactly from a snapshot, from a
// moment of the history and in a verification. A short target stays in the
// metadata.

import { mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { dataKey, META } from "../../contract/layout.ts";
import { userMetadataBytes, USER_METADATA_LIMIT_BYTES } from "../../contract/link-meta.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "links";
/** 4,000 bytes of ASCII path: 4,000 bytes URI-encoded too, twice the whole metadata limit. */
const LONG = `${"deep/".repeat(799)}x.txt`.slice(0, 4_000);
/** 18 bytes of UTF-8, 54 URI-encoded, 200 times: 3,600 bytes, 10,800 encoded. */
const WIDE = "日本語/😀 %é".repeat(200);

describe.each([false, true])("symlinks with long targets (versioned bucket: %s)", (versioned) => {
  let cloud: TestCloud;
  let agent: RunningAgent | undefined;
  const work = tempDir();
  const src = join(work.path, "src");
  let config: string;

  beforeAll(async () => {
    cloud = await startTestCloud({ versioned });
    mkdirSync(join(src, "sub"), { recursive: true });
    writeFileSync(join(src, "sub", "file.txt"), "content\n");
    symlinkSync("sub/file.txt", join(src, "short"));
    symlinkSync(LONG, join(src, "long"));
    symlinkSync(WIDE, join(src, "sub", "wide"));
    config = cloud.writeConfig(work.path, [{ name: SET, path: "src" }]);
    agent = await startAgent(loadConfig(config), silentLogger);
  });

  afterAll(async () => {
    await agent?.stop();
    await cloud?.stop();
    work.remove();
  });

  it("replicate, the long targets in their objects' bodies, and restore exactly from a snapshot, a moment and a verification", async () => {
    expect(Buffer.byteLength(LONG)).toBe(4_000);
    expect(Buffer.byteLength(WIDE)).toBe(3_600);
    await eventually(async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src)));
    const long = await cloud.store.head(dataKey(SET, "long"));
    expect(long?.meta[META.linkTarget]).toBeUndefined();
    expect(long?.meta[META.linkInBody]).toBe("1");
    expect(userMetadataBytes(long?.meta ?? {})).toBeLessThan(USER_METADATA_LIMIT_BYTES / 4);
    expect((await cloud.store.head(dataKey(SET, "sub/wide")))?.meta[META.linkInBody]).toBe("1");
    expect((await cloud.store.head(dataKey(SET, "short")))?.meta[META.linkTarget]).toBe("sub%2Ffile.txt");

    const before = await pictureOfSource(src, { microseconds: true });
    const moment = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 5));
    renameSync(join(src, "long"), join(src, "sub", "long-moved"));
    symlinkSync(WIDE.slice(0, 600), join(src, "wide-again"));
    await eventually(async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src)));
    const now = await pictureOfSource(src, { microseconds: true });

    const task = await tidemark(["task", SET, "--label", "links", "--wait", "--json", "--config", config]);
    expect(task.code, task.stderr).toBe(0);
    const result = (JSON.parse(task.stdout) as { result: TaskResult }).result;
    expect(result.status).toBe("succeeded");
    const fromSnapshot = join(work.path, "from-snapshot");
    const restore = await tidemark(["restore", SET, "--snapshot", String(result.outputs.snapshotId), "--to", fromSnapshot, "--config", config]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await pictureOfSource(fromSnapshot, { microseconds: true })).toEqual(now);

    const fromMoment = join(work.path, "from-moment");
    const at = await tidemark(["restore", SET, "--at", moment, "--to", fromMoment, "--config", config]);
    expect(at.code, at.stderr).toBe(0);
    expect(await pictureOfSource(fromMoment, { microseconds: true })).toEqual(before);

    const verify = await tidemark(["verify", SET, "--json", "--config", config]);
    expect(verify.code, verify.stdout).toBe(0);
    expect((JSON.parse(verify.stdout) as { report: unknown }).report).toMatchObject({ missing: [], different: [], extra: [] });
  }, 240_000);
});
