import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkInotify, checkNode, countFolders, runDoctor } from "../../agent/doctor.ts";
import { loadConfig } from "../../agent/config.ts";
import { Journal } from "../../agent/journal.ts";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { tidemark } from "../support/cli.ts";
import { hungAt } from "../support/hung-root.ts";
import { REGION, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

describe("tidemark doctor", () => {
  let cloud: TestCloud;
  let dir: ReturnType<typeof tempDir>;
  beforeAll(async () => {
    cloud = await startTestCloud();
    dir = tempDir();
    mkdirSync(join(dir.path, "www", "a", "b"), { recursive: true });
  });
  afterAll(async () => {
    await cloud.stop();
    dir.remove();
  });

  const level = (checks: { name: string; level: string }[], name: string) => checks.find((c) => c.name === name)?.level;

  it("passes every check against a working target, and queues nothing", async () => {
    const config = cloud.writeConfig(dir.path, [{ name: "www", path: "www" }]);
    const out = await tidemark(["doctor", "--json", "--config", config]);
    const report = JSON.parse(out.stdout) as { ok: boolean; checks: { name: string; level: string; detail: string }[] };
    expect(report.checks.filter((c) => c.level === "fail")).toEqual([]);
    expect(out.code).toBe(0);
    expect(report.ok).toBe(true);
    expect(report.checks.map((c) => c.name)).toEqual(["node", "config", "proxy", "credentials", "queue", "send", "bucket", "stage www", "read www", "inotify", "inotify queue", "clock"]);
    // The send check's message has no group id: the FIFO queue refused it, so the applier has nothing to receive.
    const received = await cloud.sqs.send(new ReceiveMessageCommand({ QueueUrl: cloud.queueUrl, WaitTimeSeconds: 0 }));
    expect(received.Messages ?? []).toEqual([]);
    const s3 = makeS3Client({ region: REGION, endpoint: cloud.endpoint });
    const staged = await s3.send(new ListObjectsV2Command({ Bucket: cloud.bucket, Prefix: "staging/www/doctor-" }));
    expect(staged.KeyCount).toBe(1);
    const outside = await s3.send(new ListObjectsV2Command({ Bucket: cloud.bucket, Prefix: "data/" }));
    expect(outside.KeyCount ?? 0).toBe(0);
    s3.destroy();
  });

  it("names a missing queue and a missing bucket, and exits 1", async () => {
    const config = cloud.writeConfig(dir.path, [{ name: "www", path: "www" }], {
      queueUrl: cloud.queueUrl.replace("tidemark.fifo", "nope.fifo"),
      bucket: "no-such-bucket",
    });
    const checks = await runDoctor(config);
    expect(level(checks, "queue")).toBe("fail");
    expect(checks.find((c) => c.name === "queue")?.detail).toMatch(/nope\.fifo/);
    expect(level(checks, "bucket")).toBe("fail");
    expect(checks.some((c) => c.name.startsWith("stage"))).toBe(false);
    const out = await tidemark(["doctor", "--config", config]);
    expect(out.code).toBe(1);
    expect(out.stdout).toMatch(/FAIL\s+queue/);
  });

  it("fails fast and clearly when the endpoint does not answer", async () => {
    const config = cloud.writeConfig(dir.path, [{ name: "www", path: "www" }], { endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/tidemark.fifo" });
    const checks = await runDoctor(config);
    expect(level(checks, "queue")).toBe("fail");
    expect(checks.find((c) => c.name === "queue")?.detail).toMatch(/ECONNREFUSED|connect/);
    expect(level(checks, "clock")).toBe("warn");
  });

  it("stops at a broken config, saying why", async () => {
    const config = join(dir.path, "broken.json");
    writeFileSync(config, JSON.stringify({ queueUrl: cloud.queueUrl, bucket: cloud.bucket, stateDir: "s", sets: [{ name: "gone", path: "missing-folder" }] }));
    const checks = await runDoctor(config);
    expect(checks.map((c) => [c.name, c.level])).toEqual([
      ["node", "ok"],
      ["config", "fail"],
    ]);
    expect(checks[1]?.detail).toMatch(/missing-folder/);
  });

  it("judges the Node version, the clock and the inotify limit", async () => {
    expect(checkNode("20.20.2").level).toBe("fail");
    expect(checkNode("22.22.0").level).toBe("warn");
    expect(checkNode("24.1.0").level).toBe("ok");
    expect(countFolders(join(dir.path, "www"))).toEqual({ folders: 3, complete: true });
    const config = loadConfig(cloud.writeConfig(dir.path, [{ name: "www", path: "www" }]));
    const limit = join(dir.path, "max_user_watches");
    writeFileSync(limit, "2\n");
    expect(checkInotify(config, limit)).toMatchObject({ level: "fail", detail: expect.stringMatching(/3 folders to watch, limit 2: raise it/) });
    writeFileSync(limit, "100000\n");
    expect(checkInotify(config, limit).level).toBe("ok");
    const skewed = await runDoctor(cloud.writeConfig(dir.path, [{ name: "www", path: "www" }]), { now: () => Date.now() + 20 * 60_000 });
    expect(skewed.find((c) => c.name === "clock")).toMatchObject({ level: "fail", detail: expect.stringMatching(/ahead of/) });
  });

  it("warns of a held set's root that does not answer, and counts no folder under it", async () => {
    mkdirSync(join(dir.path, "hung", "x", "y"), { recursive: true });
    const config = cloud.writeConfig(dir.path, [
      { name: "www", path: "www" },
      { name: "hung", path: "hung" },
    ]);
    const hungRoot = join(dir.path, "hung");
    const journal = Journal.open(join(dir.path, "state"));
    try {
      journal.roots.hold("hung", hungRoot, { ok: false, state: "root-unresponsive", expected: "an answer within 10 s", found: "none" });
    } finally {
      journal.close();
    }
    const { look, options } = hungAt(hungRoot);
    const limit = join(dir.path, "watches-limit");
    writeFileSync(limit, "100000\n");
    const checks = await runDoctor(config, { rootLook: look, rootWatch: options, inotifyLimitFile: limit });
    expect(level(checks, "config")).toBe("ok");
    expect(checks.find((c) => c.name === `root ${hungRoot}`)).toMatchObject({ level: "warn", detail: expect.stringMatching(/did not answer within 10 s \(hung network file system\?\)/) });
    expect(level(checks, "set hung root")).toBe("fail");
    // www, www/a, www/a/b: none of hung's three.
    expect(checks.find((c) => c.name === "inotify")?.detail).toBe("3 folders to watch, limit 100000");
  });
});
