// `tidemark local --versioned-bucket`: the local cloud's bucket keeps the
// versions the applier replaces, as the AWS stack's versioned bucket does;
// without the option it stays unversioned.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GetBucketVersioningCommand, GetObjectCommand, ListObjectVersionsCommand } from "@aws-sdk/client-s3";
import { afterEach, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { spawnTidemark, tidemark } from "../support/cli.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

type Child = ReturnType<typeof spawnTidemark>;
const children: Child[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

/** Starts `tidemark local` and waits for its banner: its endpoint and bucket. */
async function startLocal(args: string[]): Promise<{ child: Child; endpoint: string; bucket: string }> {
  const child = spawnTidemark(["local", "--port", "0", ...args]);
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`tidemark local exited with ${child.exitCode}: ${stderr}`);
    expect(stdout).toContain("Press Ctrl-C to stop.");
  }, 30_000, 50);
  const field = (name: string) => new RegExp(`^ {2}${name} +(\\S+)$`, "m").exec(stdout)?.[1] ?? "";
  return { child, endpoint: field("endpoint"), bucket: field("bucket") };
}

function stop(child: Child): Promise<number | null> {
  return new Promise((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.kill("SIGINT");
  });
}

it("documents --versioned-bucket in its help", async () => {
  const out = await tidemark(["local", "--help"]);
  expect(out.stdout).toContain("--versioned-bucket");
});

it("keeps every version the applier replaces with --versioned-bucket, and none without", async () => {
  const work = tempDir();
  try {
    const source = join(work.path, "site");
    mkdirSync(source);
    writeFileSync(join(source, "page.txt"), "first");
    const local = await startLocal(["--versioned-bucket", "--state", join(work.path, "state"), "--source", source]);
    const s3 = makeS3Client({ region: "us-east-1", endpoint: local.endpoint });
    try {
      expect((await s3.send(new GetBucketVersioningCommand({ Bucket: local.bucket }))).Status).toBe("Enabled");
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
    expect(await stop(local.child)).toBe(0);

    const plain = await startLocal(["--state", join(work.path, "plain")]);
    const plainS3 = makeS3Client({ region: "us-east-1", endpoint: plain.endpoint });
    try {
      expect((await plainS3.send(new GetBucketVersioningCommand({ Bucket: plain.bucket }))).Status).toBeUndefined();
    } finally {
      plainS3.destroy();
    }
    expect(await stop(plain.child)).toBe(0);
  } finally {
    work.remove();
  }
});
