// Where the applier's task settings come from: the Lambda environment the
// stack sets (against fakes of the AWS APIs), and the local cloud's stand-ins.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { taskResultKey } from "../../contract/layout.ts";
import { TaskResultSchema } from "../../contract/tasks.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { localTaskSettings } from "../../lambdas/local/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { taskSettingsFromEnvironment } from "../../lambdas/tasks/environment.ts";
import { startFakeAws, type FakeAws } from "../support/aws-fakes.ts";
import { tempDir } from "../support/tree.ts";

const SET = "db";
const marker = (task: Record<string, unknown>, id: string) => ({ messageId: id, groupId: SET, body: JSON.stringify({ v: 1, set: SET, task }) });

async function resultOf(store: MemoryStore, id: string) {
  const body = (await store.get(taskResultKey(SET, id)))?.body;
  return body && TaskResultSchema.parse(JSON.parse(body.toString()));
}

describe("task settings from the applier's environment", () => {
  let aws: FakeAws;
  let store: MemoryStore;
  beforeEach(async () => {
    aws = await startFakeAws();
    store = new MemoryStore();
  });
  afterEach(() => aws.stop());

  const applier = (env: Record<string, string>) =>
    new Applier({ store, log: () => {}, tasks: taskSettingsFromEnvironment({ TIDEMARK_ACTIONS_ENDPOINT: aws.endpoint, ...env }, "us-east-1", "target-bucket", store) });

  it("sends events to the configured bus, backs up the bucket by its ARN, and invokes only allow-listed functions", async () => {
    aws.functions.set("hook", () => ({ response: "ok" }));
    aws.functions.set("other", () => ({ response: "never" }));
    const a = applier({
      TIDEMARK_EVENT_BUS: "acme-events",
      TIDEMARK_INVOKE_ALLOW: "arn:aws:lambda:us-east-1:000000000000:function:hook",
      TIDEMARK_ACCOUNT: "000000000000",
      TIDEMARK_BACKUP_VAULT: "acme-vault",
      TIDEMARK_BACKUP_ROLE_ARN: "arn:aws:iam::000000000000:role/backup",
      TIDEMARK_BUCKET_ARN: "arn:aws-cn:s3:::target-bucket",
    });
    await a.applyMessage(marker({ action: "event", id: "e1" }, "m1"));
    await a.applyMessage(marker({ action: "backup", id: "b1" }, "m2"));
    await a.applyMessage(marker({ action: "invoke", function: "hook", id: "i1" }, "m3"));
    await a.applyMessage(marker({ action: "invoke", function: "other", id: "i2" }, "m4"));
    expect(aws.events.map((e) => [e.bus, e.detailType])).toContainEqual(["acme-events", "Tidemark Task Marker"]);
    expect(aws.backupJobs.map((j) => [j.vault, j.resourceArn])).toEqual([["acme-vault", "arn:aws-cn:s3:::target-bucket"]]);
    expect((await resultOf(store, "i1"))?.status).toBe("succeeded");
    expect((await resultOf(store, "i2"))?.status).toBe("failed");
    expect(aws.invocations.map((i) => i.function)).toEqual(["hook"]);
    expect(aws.refused).toEqual([]);
  });

  it("invokes only the very function on the allow-list: same name in another account, region or qualifier is refused", async () => {
    aws.functions.set("hook", () => ({ response: "ok" }));
    const a = applier({
      TIDEMARK_INVOKE_ALLOW: "arn:aws:lambda:us-east-1:000000000000:function:hook,arn:aws:lambda:us-east-1:000000000000:function:hook:prod",
      TIDEMARK_ACCOUNT: "000000000000",
    });
    const refused = [
      "arn:aws:lambda:us-east-1:111111111111:function:hook",
      "arn:aws:lambda:eu-west-1:000000000000:function:hook",
      "arn:aws:lambda:us-east-1:000000000000:function:hook:staging",
      "hook:7",
      "111111111111:function:hook",
    ];
    const accepted = ["hook", "hook:prod", "hook:$LATEST", "000000000000:function:hook", "arn:aws:lambda:us-east-1:000000000000:function:hook:prod"];
    for (const [i, fn] of [...refused, ...accepted].entries()) await a.applyMessage(marker({ action: "invoke", function: fn, id: `i${i}` }, `m${i}`));
    for (let i = 0; i < refused.length; i += 1) {
      expect(await resultOf(store, `i${i}`)).toMatchObject({ status: "failed", error: expect.stringContaining("not on the target's invoke allow-list") });
    }
    for (let i = refused.length; i < refused.length + accepted.length; i += 1) expect((await resultOf(store, `i${i}`))?.status).toBe("succeeded");
    expect(aws.invocations.map((i) => i.requested)).toEqual([
      "arn:aws:lambda:us-east-1:000000000000:function:hook",
      "arn:aws:lambda:us-east-1:000000000000:function:hook:prod",
      "arn:aws:lambda:us-east-1:000000000000:function:hook",
      "arn:aws:lambda:us-east-1:000000000000:function:hook",
      "arn:aws:lambda:us-east-1:000000000000:function:hook:prod",
    ]);
  });

  it("refuses a function named without its ARN when the applier's account is unknown", async () => {
    aws.functions.set("hook", () => ({ response: "ok" }));
    await applier({ TIDEMARK_INVOKE_ALLOW: "arn:aws:lambda:us-east-1:000000000000:function:hook" }).applyMessage(marker({ action: "invoke", function: "hook", id: "i1" }, "m1"));
    expect(await resultOf(store, "i1")).toMatchObject({ status: "failed", error: expect.stringContaining("name it by its full ARN") });
    expect(aws.invocations).toEqual([]);
  });

  it("skips a backup when no vault is configured and every marker when TIDEMARK_TASKS_ENABLED is false", async () => {
    await applier({}).applyMessage(marker({ action: "backup", id: "b1" }, "m1"));
    expect(await resultOf(store, "b1")).toMatchObject({ status: "skipped", error: expect.stringContaining("tidemark:backup=true") });
    await applier({ TIDEMARK_TASKS_ENABLED: "false" }).applyMessage(marker({ action: "snapshot", id: "s1" }, "m2"));
    expect(await resultOf(store, "s1")).toMatchObject({ status: "skipped", error: expect.stringContaining("disabled on this target") });
    expect(aws.backupJobs).toEqual([]);
  });
});

describe("task actions in the local cloud", () => {
  const dir = tempDir();
  afterEach(() => dir.remove());

  it("appends events to the local event log and says invoke and backup are not available locally", async () => {
    const store = new MemoryStore();
    const file = join(dir.path, "events.jsonl");
    const a = new Applier({ store, log: () => {}, tasks: localTaskSettings(file) });
    await a.applyMessage(marker({ action: "event", id: "e1", label: "deploy" }, "m1"));
    await a.applyMessage(marker({ action: "invoke", function: "f", id: "i1" }, "m2"));
    await a.applyMessage(marker({ action: "backup", id: "b1" }, "m3"));
    const events = readFileSync(file, "utf8").trim().split("\n").map((line) => JSON.parse(line));
    expect(events.filter((e) => e["detail-type"] === "Tidemark Task Marker").map((e) => e.detail)).toEqual([expect.objectContaining({ taskId: "e1", label: "deploy", set: SET })]);
    expect(await resultOf(store, "i1")).toMatchObject({ status: "skipped", error: expect.stringContaining("not available locally") });
    expect(await resultOf(store, "b1")).toMatchObject({ status: "skipped", error: expect.stringContaining("not available locally") });
  });
});
