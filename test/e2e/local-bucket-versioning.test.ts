// `tidemark local`'s bucket keeps the versions the applier replaces, as the
// AWS stack's versioned bucket does; `--unversioned-bucket` runs it without,
// and a state dir keeps the versioning it was created with.

import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GetBucketVersioningCommand, GetObjectCommand, ListObjectVersionsCommand } from "@aws-sdk/client-s3";
import { afterEach, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { BUCKET_VERSIONING_FILE } from "../../lambdas/local/bucket-versioning.ts";
import { tidemark } from "../support/cli.ts";
import { eventually } from "../support/local-cloud.ts";
import { startLocal, stopLocal, stopLocals } from "../support/local-command.ts";
import { tempDir } from "../support/tree.ts";

afterEach(stopLocals);

async function bucketVersioning(local: { endpoint: string; bucket: string }): Promise<string | undefined> {
  const s3 = makeS3Client({ region: "us-east-1", endpoint: local.endpoint });
  try {
    return (await s3.send(new GetBucketVersioningCommand({ Bucket: local.bucket }))).Status;
  } finally {
    s3.destroy();
  }
}

it("documents the versioned default and --unversioned-bucket in its help", async () => {
  const out = await tidemark(["local", "--help"]);
  expect(out.stdout).toContain("--unversioned-bucket");
  expect(out.stdout).toContain("--versioned-bucket");
  expect(out.stdout).toMatch(/keeps object versions, as the AWS stack's/);
  expect(out.stdout).toMatch(/state dir keeps the versioning it\s+was created with/);
});

it("keeps every version the applier replaces by default, and none with --unversioned-bucket", async () => {
  const work = tempDir();
  try {
    const source = join(work.path, "site");
    mkdirSync(source);
    writeFileSync(join(source, "page.txt"), "first");
    const local = await startLocal(["--state", join(work.path, "state"), "--source", source]);
    expect(local.line("versions")).toBe("versioned (the default, as the AWS stack's bucket)");
    const s3 = makeS3Client({ region: "us-east-1", endpoint: local.endpoint });
    try {
      expect(await bucketVersioning(local)).toBe("Enabled");
      const versionsOf = async () => (await s3.send(new ListObjectVersionsCommand({ Bucket: local.bucket, Prefix: "data/site/page.txt" }))).Versions ?? [];
      await eventually(async () => expect(await versionsOf()).toHaveLength(1));
      writeFileSync(join(source, "page.txt"), "second");
      await eventually(async () => {
        const now = await s3.send(new GetObjectCommand({ Bucket: local.bucket, Key: "data/site/page.txt" }));
        expect(await now.Body?.transformToString()).toBe("second");
      });
      const versions = await versionsOf();
      expect(versions.length).toBeGreaterThanOrEqual(2);
      expect(versions[0]?.IsLatest).toBe(true);
      const old = await s3.send(new GetObjectCommand({ Bucket: local.bucket, Key: "data/site/page.txt", VersionId: versions.at(-1)?.VersionId }));
      expect(await old.Body?.transformToString()).toBe("first");
    } finally {
      s3.destroy();
    }
    expect(await stopLocal(local.child)).toBe(0);

    const plain = await startLocal(["--unversioned-bucket", "--state", join(work.path, "plain")]);
    expect(plain.line("versions")).toBe("unversioned (as asked)");
    expect(await bucketVersioning(plain)).toBeUndefined();
    expect(await stopLocal(plain.child)).toBe(0);

    // --versioned-bucket, the old way to ask for it, still runs: the default it names.
    const asked = await startLocal(["--versioned-bucket", "--state", join(work.path, "asked")]);
    expect(await bucketVersioning(asked)).toBe("Enabled");
    expect(await stopLocal(asked.child)).toBe(0);
  } finally {
    work.remove();
  }
});

it("keeps a state dir created unversioned as it is, and refuses to switch either way", async () => {
  const work = tempDir();
  try {
    const source = join(work.path, "site");
    mkdirSync(source);
    writeFileSync(join(source, "page.txt"), "first");
    const state = join(work.path, "state");
    const first = await startLocal(["--unversioned-bucket", "--state", state, "--source", source]);
    const s3 = makeS3Client({ region: "us-east-1", endpoint: first.endpoint });
    try {
      await eventually(async () => {
        const now = await s3.send(new GetObjectCommand({ Bucket: first.bucket, Key: "data/site/page.txt" }));
        expect(await now.Body?.transformToString()).toBe("first");
      });
    } finally {
      s3.destroy();
    }
    expect(await stopLocal(first.child)).toBe(0);

    // Without an option: still unversioned, and the banner says why.
    const again = await startLocal(["--state", state]);
    expect(again.line("versions")).toMatch(/^unversioned \(kept: this state dir was created with an unversioned bucket/);
    expect(await bucketVersioning(again)).toBeUndefined();
    expect(await stopLocal(again.child)).toBe(0);

    // Asking it for versions is refused with a one-line reason, and starts nothing.
    const refused = await tidemark(["local", "--port", "0", "--state", state, "--versioned-bucket"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toContain(`--versioned-bucket: the state dir ${state} was created with an unversioned bucket`);
    expect(refused.stdout).not.toContain("tidemark local is running");

    // A state dir from before the record (created unversioned, the old default) is read for what it holds.
    rmSync(join(state, "emulator", BUCKET_VERSIONING_FILE));
    const legacy = await startLocal(["--state", state]);
    expect(legacy.line("versions")).toMatch(/^unversioned \(kept/);
    expect(await bucketVersioning(legacy)).toBeUndefined();
    expect(await stopLocal(legacy.child)).toBe(0);
    expect(existsSync(join(state, "emulator", BUCKET_VERSIONING_FILE))).toBe(true);
  } finally {
    work.remove();
  }
});

it("does not switch a versioned state dir off, and takes only one of the two options", async () => {
  const work = tempDir();
  try {
    const versionedState = join(work.path, "versioned");
    const versioned = await startLocal(["--state", versionedState]);
    expect(await stopLocal(versioned.child)).toBe(0);
    const off = await tidemark(["local", "--port", "0", "--state", versionedState, "--unversioned-bucket"]);
    expect(off.code).toBe(2);
    expect(off.stderr).toContain(`--unversioned-bucket: the state dir ${versionedState} was created with a versioned bucket`);

    const both = await tidemark(["local", "--port", "0", "--state", join(work.path, "both"), "--versioned-bucket", "--unversioned-bucket"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("exclude each other");
  } finally {
    work.remove();
  }
});
