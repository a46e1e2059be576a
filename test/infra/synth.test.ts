// `npx cdk synth` as a platform engineer runs it, on this machine with no AWS
// credentials and no network; then the applier bundle it produced, loaded the
// way Lambda loads it, applies a message to a bucket on the emulator.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { taskResultKey } from "../../contract/layout.ts";
import { runProcess } from "../support/cli.ts";
import { messageBody, putRecord, signedSqsAttributes } from "../support/messages.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { tempDir } from "../support/tree.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The environment of a machine with no AWS identity at all. */
function withoutAws(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("AWS_") && !key.startsWith("CDK_")) env[key] = value;
  return {
    ...env,
    AWS_CONFIG_FILE: "/nonexistent/aws-config",
    AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/aws-credentials",
    AWS_EC2_METADATA_DISABLED: "true",
    CDK_DISABLE_CLI_TELEMETRY: "true",
    ...extra,
  };
}

describe("cdk synth", () => {
  const out = tempDir();
  let synth: { code: number | null; stdout: string; stderr: string };

  beforeAll(async () => {
    synth = await runProcess(process.execPath, [join(ROOT, "node_modules/aws-cdk/bin/cdk"), "synth", "--no-notices", "--quiet", "--output", out.path], {
      cwd: ROOT,
      env: withoutAws(),
      timeoutMs: 180_000,
    });
  }, 180_000);
  afterAll(() => out.remove());

  it("succeeds with no credentials, no network and no context lookups", () => {
    expect(synth.stderr).not.toMatch(/AwsSolutions-|Error/);
    expect(synth.code).toBe(0);
    const template = JSON.parse(readFileSync(join(out.path, "Tidemark.template.json"), "utf8")) as { Resources: Record<string, { Type: string }> };
    expect(Object.values(template.Resources).some((r) => r.Type === "AWS::Lambda::Function")).toBe(true);
    const manifest = JSON.parse(readFileSync(join(out.path, "manifest.json"), "utf8")) as { missing?: unknown[] };
    expect(manifest.missing ?? []).toEqual([]);
  });

  it("bundles an applier that Lambda's loader can run against a bucket", async () => {
    const assets = JSON.parse(readFileSync(join(out.path, "Tidemark.assets.json"), "utf8")) as { files: Record<string, { source: { path: string; packaging: string } }> };
    const bundle = Object.values(assets.files).find((f) => f.source.packaging === "zip");
    expect(bundle).toBeDefined();
    const index = join(out.path, bundle?.source.path ?? "", "index.js");
    expect(existsSync(index)).toBe(true);

    const emulator = await startTestEmulator();
    try {
      const bucket = emulator.newBucket();
      const body = messageBody("docs", [putRecord(1, "hello.txt", "from the bundled applier")]);
      const record = (messageId: string, text: string, senderId: string, signed: boolean) => ({
        messageId,
        receiptHandle: `rh-${messageId}`,
        body: text,
        attributes: { ApproximateReceiveCount: "1", SentTimestamp: "0", SenderId: senderId, ApproximateFirstReceiveTimestamp: "0", MessageGroupId: "docs" },
        messageAttributes: signed ? signedSqsAttributes("docs", text) : {},
        md5OfBody: "",
        eventSource: "aws:sqs",
        eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
        awsRegion: "us-east-1",
      });
      const marker = (id: string) => JSON.stringify({ v: 1, set: "docs", task: { id, action: "snapshot", label: id } });
      // Lambda's Node.js runtime requires index.js and calls the exported handler, with a context that tells the
      // time left (a marker's action asks for it).
      const driver = join(out.path, "invoke.cjs");
      writeFileSync(
        driver,
        `const { handler } = require(${JSON.stringify(index)});
handler(JSON.parse(process.argv[2]), { getRemainingTimeInMillis: () => 60000 }).then((r) => process.stdout.write(JSON.stringify(r)), (e) => { console.error(e); process.exit(1); });`,
      );
      // Each invocation a fresh process, as a cold start reads the environment.
      const invoke = async (...records: ReturnType<typeof record>[]) => {
        const result = await runProcess(process.execPath, [driver, JSON.stringify({ Records: records })], {
          cwd: out.path,
          env: withoutAws({
            TIDEMARK_BUCKET: bucket,
            TIDEMARK_S3_ENDPOINT: emulator.endpoint,
            AWS_REGION: "us-east-1",
            TIDEMARK_METRICS_NAMESPACE: "Tidemark/test",
            TIDEMARK_MARKER_SENDERS: JSON.stringify([{ id: "AROAOPS", arn: "arn:aws:iam::123456789012:role/ops" }]),
            // Markers are recorded, their actions skipped: who may send them is checked before either.
            TIDEMARK_TASKS_ENABLED: "false",
          }),
        });
        const { batchItemFailures } = JSON.parse(result.stdout.slice(result.stdout.lastIndexOf('{"batchItemFailures"'))) as { batchItemFailures: unknown[] };
        return { ...result, done: batchItemFailures.length === 0 };
      };
      const first = await invoke(record("m-1", body, "x", true));
      expect(first.done).toBe(true);
      expect(first.stderr).toBe("");
      expect(first.stdout).toContain('"Namespace":"Tidemark/test"');
      // With tidemark:markerSenders in its environment: the shared agent role's queue marker is refused (its one
      // error line names the sender), the listed role's runs.
      const refused = await invoke(record("m-2", marker("agent"), "AROAAGENTSHARED:i-0abc", false));
      expect(refused.done).toBe(true);
      expect(refused.stderr.trim().split("\n").map((line) => JSON.parse(line) as unknown)).toEqual([expect.objectContaining({ msg: "message refused", messageId: "m-2", sender: "AROAAGENTSHARED:i-0abc" })]);
      const accepted = await invoke(record("m-3", marker("ops"), "AROAOPS:alice", false));
      expect(accepted.done).toBe(true);
      expect(accepted.stderr).not.toContain("message refused");
      const s3 = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
      const store = new S3Store(s3, bucket);
      const stored = await store.get("data/docs/hello.txt");
      const status = await readSetStatus(store, "docs");
      const [ops, agent] = await Promise.all([store.get(taskResultKey("docs", "ops")), store.get(taskResultKey("docs", "agent"))]);
      s3.destroy();
      expect(stored?.body.toString()).toBe("from the bundled applier");
      expect(status.refused).toMatchObject({ count: 1, last: { messageId: "m-2", sender: "AROAAGENTSHARED:i-0abc", reason: expect.stringMatching(/tidemark:markerSenders \(arn:aws:iam::123456789012:role\/ops \(AROAOPS\)\)$/) } });
      expect(JSON.parse(ops?.body.toString() ?? "{}")).toMatchObject({ status: "skipped" });
      expect(agent).toBeUndefined();
    } finally {
      await emulator.server.stop();
    }
  });
});
