import { createHash } from "node:crypto";
import type { ServerResponse } from "node:http";
import { ReceiveMessageCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { SqsSendRequests } from "../../agent/transport/sqs-send.ts";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { AwsRequestError } from "../../lambdas/signed-requests.ts";
import { wireJson } from "../../contract/wire.ts";
import { captureServerForTests } from "../support/capture-server.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { checkSigV4, type WireRequest } from "../support/sigv4.ts";

const CREDENTIALS = { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "tidemark/secret+key" };

function clientFor(endpoint: string | undefined, settings: { maxAttempts?: number } = {}): SQSClient {
  return new SQSClient({ region: "eu-west-1", credentials: CREDENTIALS, ...(endpoint ? { endpoint } : {}), ...settings });
}

const md5 = (text: string) => createHash("md5").update(text, "utf8").digest("hex");

/** Answers SendMessage as SQS does, with the MD5 of the body it received (or a wrong one). */
function answerSendMessage(request: WireRequest, res: ServerResponse, corrupt = false): void {
  const input = JSON.parse(request.body.toString("utf8")) as { MessageBody: string };
  res.writeHead(200, { "content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "REQ1" });
  res.end(JSON.stringify({ MessageId: "m-1", MD5OfMessageBody: corrupt ? md5("other") : md5(input.MessageBody), SequenceNumber: "1" }));
}

async function open(client: SQSClient, queueUrl: string): Promise<SqsSendRequests> {
  const requests = await SqsSendRequests.open(client, queueUrl, { retryBaseMs: 1 });
  if (!requests) throw new Error("expected a direct SendMessage");
  return requests;
}

// A message body as the agent sends it: JSON, with quotes, escapes and characters beyond ASCII to carry.
const BODY = wireJson({ v: 1, set: "docs", records: [{ seq: 1, op: "put", path: 'a "quoted"\\path/ünï 日本 😀\n', content: { kind: "inline", data: "AAEC/+/=" } }] });

describe("SendMessage on the wire", () => {
  const capture = captureServerForTests();

  it("sends what the SDK sends, signed so that SQS's check accepts it", async () => {
    capture.server.responder = (request, res) => answerSendMessage(request, res);
    const client = clientFor(capture.server.endpoint);
    const queueUrl = `${capture.server.endpoint}/000000000000/tidemark.fifo`;
    const direct = await open(client, queueUrl);
    try {
      const signature = { "tidemark-sig": { DataType: "String", StringValue: "v1.key.sig" } };
      await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: BODY, MessageGroupId: "docs", MessageDeduplicationId: "docs:1-1", MessageAttributes: signature }));
      expect(await direct.send({ body: BODY, groupId: "docs", deduplicationId: "docs:1-1", attributes: { "tidemark-sig": "v1.key.sig" } })).toBe("m-1");
      const [viaSdk, viaDirect] = capture.server.requests as [WireRequest, WireRequest];
      expect(viaDirect.method).toBe("POST");
      expect(viaDirect.url).toBe(viaSdk.url);
      for (const name of ["content-type", "x-amz-target"]) expect(viaDirect.headers[name], name).toBe(viaSdk.headers[name]);
      expect(JSON.parse(viaDirect.body.toString("utf8"))).toEqual(JSON.parse(viaSdk.body.toString("utf8")));
      for (const request of [viaSdk, viaDirect]) {
        const check = checkSigV4(request, CREDENTIALS.secretAccessKey);
        expect(check.ok, check.reason).toBe(true);
        expect(String(request.headers.authorization)).toContain("/eu-west-1/sqs/aws4_request");
      }
    } finally {
      direct.close();
    }
  });

  it("refuses an answer whose MD5 is not the sent body's, as the SDK does", async () => {
    capture.server.responder = (request, res) => answerSendMessage(request, res, true);
    const direct = await open(clientFor(capture.server.endpoint), `${capture.server.endpoint}/000000000000/tidemark.fifo`);
    try {
      const error = await direct.send({ body: BODY, groupId: "docs", deduplicationId: "docs:1-1" }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AwsRequestError);
      expect(error).toMatchObject({ name: "InvalidChecksumError" });
    } finally {
      direct.close();
    }
  });

  it("names SQS's JSON errors like the SDK, and retries only the transient ones", async () => {
    let answered = 0;
    capture.server.responder = (_request, res) => {
      answered += 1;
      if (answered === 1) {
        res.writeHead(400, { "content-type": "application/x-amz-json-1.0", "x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender" });
        res.end(JSON.stringify({ __type: "com.amazonaws.sqs#QueueDoesNotExist", message: "The specified queue does not exist." }));
      } else if (answered === 2) {
        res.writeHead(400, { "content-type": "application/x-amz-json-1.0" });
        res.end(JSON.stringify({ __type: "com.amazonaws.sqs#ThrottlingException", message: "Rate exceeded" }));
      } else answerSendMessage(capture.server.requests.at(-1) as WireRequest, res);
    };
    const client = clientFor(capture.server.endpoint);
    const queueUrl = `${capture.server.endpoint}/000000000000/tidemark.fifo`;
    const direct = await open(client, queueUrl);
    try {
      await expect(direct.send({ body: BODY, groupId: "docs", deduplicationId: "d" })).rejects.toMatchObject({
        name: "QueueDoesNotExist",
        message: "The specified queue does not exist.",
        $metadata: { httpStatusCode: 400 },
      });
      expect(capture.server.requests).toHaveLength(1);
      // Throttled, then accepted: one call.
      await direct.send({ body: BODY, groupId: "docs", deduplicationId: "d" });
      expect(capture.server.requests).toHaveLength(3);
    } finally {
      direct.close();
    }
  });

  it("leaves to the SDK a queue URL on another host than the endpoint it resolved (the SDK follows the URL)", async () => {
    const aws = clientFor(undefined);
    expect(await SqsSendRequests.open(aws, "https://sqs.us-east-1.amazonaws.com/123456789012/tidemark.fifo")).toBeUndefined();
    const same = await SqsSendRequests.open(aws, "https://sqs.eu-west-1.amazonaws.com/123456789012/tidemark.fifo");
    expect(same).toBeInstanceOf(SqsSendRequests);
    same?.close();
  });
});

describe("SendMessage on the emulator", () => {
  let emulator: Awaited<ReturnType<typeof startTestEmulator>>;
  beforeAll(async () => {
    emulator = await startTestEmulator();
  });
  afterAll(async () => {
    await emulator.server.stop();
  });

  it("delivers into the group with the deduplication id, once per id, with no SDK request from the transport", async () => {
    const queueUrl = emulator.server.createQueue("direct.fifo", { attributes: { FifoQueue: "true" } }).queueUrl;
    const sqs = clientFor(emulator.endpoint);
    let sdkRequests = 0;
    const send = sqs.send.bind(sqs);
    const counted = Object.assign(Object.create(Object.getPrototypeOf(sqs) as object) as SQSClient, sqs, {
      send: ((command: Parameters<typeof send>[0]) => {
        sdkRequests += 1;
        return send(command);
      }) as typeof sqs.send,
    });
    const transport = new AwsTransport({ sqs: counted, s3: makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), queueUrl, bucket: "unused" });
    await transport.send("docs", "docs:1-1", BODY);
    await transport.send("docs", "docs:1-1", BODY);
    await transport.send("docs", "docs:2-2", '{"second":true}');
    expect(sdkRequests).toBe(0);
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ["All"], WaitTimeSeconds: 1 }));
    const [first] = out.Messages ?? [];
    expect([first?.Body, first?.Attributes?.MessageGroupId, first?.Attributes?.MessageDeduplicationId]).toEqual([BODY, "docs", "docs:1-1"]);
  });

  it("fails like the SDK for a queue that does not exist", async () => {
    const sqs = clientFor(emulator.endpoint, { maxAttempts: 1 });
    const queueUrl = `${emulator.endpoint}/000000000000/missing.fifo`;
    const viaSdk = await sqs
      .send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: "x", MessageGroupId: "g", MessageDeduplicationId: "d" }))
      .catch((e: unknown) => e as Error);
    const direct = await open(sqs, queueUrl);
    try {
      const viaDirect = await direct.send({ body: "x", groupId: "g", deduplicationId: "d" }).catch((e: unknown) => e as Error);
      expect(viaDirect).toBeInstanceOf(AwsRequestError);
      expect((viaDirect as Error).name).toBe((viaSdk as Error).name);
    } finally {
      direct.close();
    }
  });
});
