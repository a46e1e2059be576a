// Malformed and hostile messages sent straight to the queue write nothing,
// leave a readable error in the set's status, and do not stop other sets.

import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { makeSqsClient } from "../../lambdas/aws-clients.ts";
import { messageBody, putRecord, TEST_KEY } from "../support/messages.ts";
import { SIGNATURE_ATTRIBUTE, signMessage } from "../../contract/signing.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, REGION, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});
afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

it("rejects bad messages without writing, and keeps other sets flowing", async () => {
  const sqs = makeSqsClient({ region: REGION, endpoint: cloud.endpoint });
  let n = 0;
  // Signed as the set's owner would sign them: what is refused here is refused for what the message says.
  const send = (group: string, body: string) =>
    sqs.send(
      new SendMessageCommand({
        QueueUrl: cloud.queueUrl,
        MessageGroupId: group,
        MessageDeduplicationId: `d${++n}`,
        MessageBody: body,
        MessageAttributes: { [SIGNATURE_ATTRIBUTE]: { DataType: "String", StringValue: signMessage(TEST_KEY, group, body) } },
      }),
    );

  await send("good", messageBody("good", [putRecord(1, "one.txt", "one")]));
  await send("victim", "this is not json");
  await send("victim", messageBody("victim", [putRecord(1, "x", "evil")]).replace('"path":"x"', '"path":"../good/one.txt"'));
  await send("victim", messageBody("victim", [putRecord(1, "x", "evil")]).replace('"path":"x"', '"path":"/etc/passwd"'));
  await send("victim", messageBody("victim", [putRecord(1, "x", "evil")]).replace('"v":1', '"v":99'));
  await send("victim", messageBody("good", [putRecord(2, "two.txt", "spoofed")]));
  await send("good", messageBody("good", [putRecord(2, "two.txt", "two")]));

  await eventually(async () => {
    expect((await cloud.store.get("data/good/two.txt"))?.body.toString()).toBe("two");
    expect(cloud.rejections).toHaveLength(5);
  });
  expect((await cloud.store.get("data/good/one.txt"))?.body.toString()).toBe("one");
  const keys: string[] = [];
  for await (const info of cloud.store.list("")) keys.push(info.key);
  // The good set's applied messages are in its history; the rejected ones left none anywhere (the applier's
  // announcement of what it reads is its own, written once per process).
  expect(keys.filter((k) => !k.startsWith("history/good/")).sort()).toEqual(["data/good/one.txt", "data/good/two.txt", "state/applier.json", "state/good/owner.json", "state/good/status.json", "state/victim/status.json"]);
  expect(keys.filter((k) => k.startsWith("history/good/segments/"))).toHaveLength(2);

  const config = cloud.writeConfig(work.path, [
    { name: "victim", path: "victim" },
    { name: "good", path: "good" },
  ]);
  const out = await tidemark(["status", "--config", config]);
  // A rejected message makes its set unhealthy: status exits 1 for cron and monitoring.
  expect(out.code).toBe(1);
  expect(out.stdout).toMatch(/victim: last rejected message .*: message for set "good" arrived in message group "victim"/);
  const json = JSON.parse((await tidemark(["status", "--json", "--config", config])).stdout) as {
    sets: { set: string; target: { lastSeqApplied: number; lastRejected?: { error: string } } }[];
  };
  expect(json.sets.find((s) => s.set === "good")?.target.lastSeqApplied).toBe(2);
  expect(json.sets.find((s) => s.set === "victim")?.target.lastRejected?.error).toBeTruthy();
  sqs.destroy();
});
