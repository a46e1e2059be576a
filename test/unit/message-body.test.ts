// The agent's SendMessage keeps the SDK's request byte for byte while the
// body's JSON escaping is JSON.stringify's, not the SDK's character-by-character
// writer (agent/transport/message-body.ts).

import { createHash } from "node:crypto";
import type { ServerResponse } from "node:http";
import { SendMessageCommand, SQSClient, type SendMessageCommandInput, type SendMessageCommandOutput, type ServiceInputTypes, type ServiceOutputTypes } from "@aws-sdk/client-sqs";
import type { Pluggable, SerializeMiddleware } from "@smithy/types";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { messageBodyAsJson } from "../../agent/transport/message-body.ts";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { S3Client } from "@aws-sdk/client-s3";
import { captureServerForTests } from "../support/capture-server.ts";
import { checkSigV4, type WireRequest } from "../support/sigv4.ts";

const capture = captureServerForTests();

function sqsClient(endpoint: string): SQSClient {
  return new SQSClient({ region: "eu-west-1", endpoint, credentials: { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "secret" }, maxAttempts: 1 });
}

/** Answers SendMessage as SQS does, with the MD5 of the body it received (the SDK checks it). */
function answerSendMessage(request: WireRequest, res: ServerResponse): void {
  const { MessageBody } = JSON.parse(request.body.toString("utf8")) as { MessageBody: string };
  res.writeHead(200, { "content-type": "application/x-amz-json-1.0" });
  res.end(JSON.stringify({ MessageId: "m-1", MD5OfMessageBody: createHash("md5").update(MessageBody, "utf8").digest("hex"), SequenceNumber: "1" }));
}

const BODIES: Record<string, string> = {
  "a message's JSON with base64 content": JSON.stringify({ v: 1, set: "docs", records: [{ seq: 1, op: "put", path: "a/b.txt", content: { kind: "zstd", data: Buffer.alloc(300_000, 7).toString("base64") } }] }),
  "quotes, backslashes and every control character": `"quoted" \\back\\slash\\ ${Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join("")} \u007f end`,
  "non-ASCII paths, line and paragraph separators": "café/naïve/日本語/emoji 🎉 \u2028 \u2029 \u00a0 \u0800 \uffff",
  "lone surrogates": "high \ud800 alone, low \udc00 alone, reversed \udc00\ud800, pair \ud83d\ude00, trailing \ud83d",
  "an empty body": "",
};

function input(body: string) {
  return {
    QueueUrl: `${capture.server.endpoint}/000000000000/tidemark.fifo`,
    MessageBody: body,
    MessageGroupId: "docs",
    MessageDeduplicationId: "docs.1-2.g1",
    MessageAttributes: { "tidemark-signature": { DataType: "String", StringValue: "v1.key.signature" } },
  };
}

/** What a request is, leaving out the id the SDK draws at random for each call and the signature that covers it (checked on its own). */
function comparable(request: WireRequest) {
  const { "amz-sdk-invocation-id": _random, authorization: _signature, ...headers } = request.headers;
  return { method: request.method, url: request.url, headers, body: request.body.toString("hex") };
}

async function sent(body: string, plugin?: Pluggable<SendMessageCommandInput, SendMessageCommandOutput>): Promise<WireRequest> {
  const client = sqsClient(capture.server.endpoint);
  try {
    const command = new SendMessageCommand(input(body));
    if (plugin) command.middlewareStack.use(plugin);
    await client.send(command);
  } finally {
    client.destroy();
  }
  const request = capture.server.requests.at(-1);
  if (!request) throw new Error("nothing reached the server");
  return request;
}

describe("SendMessage with the body placed as JSON text", () => {
  beforeEach(() => {
    // Both requests signed at the same instant: the same x-amz-date.
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2026-11-30T07:00:00Z") });
    capture.server.responder = answerSendMessage;
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  for (const [what, body] of Object.entries(BODIES)) {
    it(`sends the SDK's exact request for ${what}`, async () => {
      const sdk = await sent(body);
      const ours = await sent(body, messageBodyAsJson);
      expect(comparable(ours)).toEqual(comparable(sdk));
      // Signed over the body that was sent (x-amz-content-sha256 is its hash), not the placeholder's.
      const signature = checkSigV4(ours, "secret");
      expect(signature.ok, signature.reason).toBe(true);
      expect((JSON.parse(ours.body.toString("utf8")) as { MessageBody: string }).MessageBody).toBe(body);
    });
  }

  it("keeps the body out of the SDK's serializer", async () => {
    const body = BODIES["a message's JSON with base64 content"] ?? "";
    const seen: unknown[] = [];
    const client = sqsClient(capture.server.endpoint);
    try {
      const command = new SendMessageCommand(input(body));
      command.middlewareStack.use(messageBodyAsJson);
      // Beside the SDK's serializer: the input it was handed to walk.
      const probe: SerializeMiddleware<SendMessageCommandInput, SendMessageCommandOutput> = (next) => async (args) => {
        seen.push(args.input.MessageBody);
        return next(args);
      };
      command.middlewareStack.addRelativeTo(
        probe,
        { name: "probe", relation: "after", toMiddleware: "serializerMiddleware" },
      );
      await client.send(command);
    } finally {
      client.destroy();
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]).not.toBe(body);
    expect(String(seen[0]).length).toBeLessThan(100);
    expect((JSON.parse(capture.server.requests[0]?.body.toString("utf8") ?? "{}") as { MessageBody: string }).MessageBody).toBe(body);
  });

  it("is what the agent's transport sends", async () => {
    const body = BODIES["quotes, backslashes and every control character"] ?? "";
    const sqs = sqsClient(capture.server.endpoint);
    const s3 = new S3Client({ region: "eu-west-1", endpoint: capture.server.endpoint, credentials: { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "secret" } });
    const seen: unknown[] = [];
    const probe: SerializeMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next) => async (args) => {
      seen.push("MessageBody" in args.input ? args.input.MessageBody : undefined);
      return next(args);
    };
    sqs.middlewareStack.addRelativeTo(
      probe,
      { name: "probe", relation: "after", toMiddleware: "serializerMiddleware" },
    );
    try {
      await new AwsTransport({ sqs, s3, queueUrl: input(body).QueueUrl, bucket: "b" }).send("docs", "docs.1-2.g1", body, { "tidemark-signature": "v1.key.signature" });
    } finally {
      sqs.destroy();
      s3.destroy();
    }
    expect(seen).toHaveLength(1);
    expect(seen[0]).not.toBe(body);
    expect((JSON.parse(capture.server.requests[0]?.body.toString("utf8") ?? "{}") as { MessageBody: string }).MessageBody).toBe(body);
  });
});
