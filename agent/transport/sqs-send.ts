// SendMessage to the FIFO queue around the SDK's per-request pipeline
// (lambdas/signed-requests.ts): the SDK's JSON serializer took ~7 ms of the
// agent's thread for each 400 KiB message, more than packing it. The request
// is SQS's JSON protocol, as the SDK sends it; the answer's MD5 of the body is
// checked as the SDK checks it.

import { createHash } from "node:crypto";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { getEndpointFromInstructions } from "@smithy/core/endpoints";
import {
  AwsRequestError,
  plainSigV4Target,
  requestIdOf,
  SignedRequests,
  type SignedRequestOptions,
  type SignedResponse,
} from "../../lambdas/signed-requests.ts";

export interface SendMessageInput {
  readonly body: string;
  readonly groupId: string;
  readonly deduplicationId: string;
  /** Message attributes, all of type String. */
  readonly attributes?: Readonly<Record<string, string>>;
}

export class SqsSendRequests {
  readonly #requests: SignedRequests;
  readonly #queueUrl: string;

  private constructor(requests: SignedRequests, queueUrl: string) {
    this.#requests = requests;
    this.#queueUrl = queueUrl;
  }

  /**
   * Direct SendMessage requests through the client's endpoint and credentials, or undefined when the SDK would do
   * something else: an endpoint that needs more than plain SigV4, or (without a custom endpoint) a queue URL on
   * another host than the resolved endpoint, which the SDK follows.
   */
  static async open(client: SQSClient, queueUrl: string, options: SignedRequestOptions = {}): Promise<SqsSendRequests | undefined> {
    const endpoint = await getEndpointFromInstructions({ QueueUrl: queueUrl }, SendMessageCommand, client.config);
    if (!client.config.isCustomEndpoint && new URL(queueUrl).origin !== endpoint.url.origin) return undefined;
    const target = plainSigV4Target(endpoint, { signingName: "sqs", signingRegion: await client.config.region() });
    return target ? new SqsSendRequests(new SignedRequests(client.config, target, sqsErrorOf, options), queueUrl) : undefined;
  }

  /** SendMessage; resolves with the message id once the queue accepted the message. */
  async send(input: SendMessageInput): Promise<string> {
    const request = {
      QueueUrl: this.#queueUrl,
      MessageBody: input.body,
      MessageGroupId: input.groupId,
      MessageDeduplicationId: input.deduplicationId,
      ...(input.attributes
        ? { MessageAttributes: Object.fromEntries(Object.entries(input.attributes).map(([name, value]) => [name, { DataType: "String", StringValue: value }])) }
        : {}),
    };
    const response = await this.#requests.send("POST", "/", {
      body: Buffer.from(JSON.stringify(request), "utf8"),
      headers: { "content-type": "application/x-amz-json-1.0", "x-amz-target": "AmazonSQS.SendMessage" },
    });
    const answer = parseAnswer(response);
    const md5 = createHash("md5").update(input.body, "utf8").digest("hex");
    if (answer.MD5OfMessageBody !== md5) {
      // As the SDK does: what the queue holds is not what was sent.
      throw new AwsRequestError("InvalidChecksumError", `the queue's MD5 of the message body (${String(answer.MD5OfMessageBody)}) is not the sent body's (${md5})`, response.status, requestIdOf(response));
    }
    return typeof answer.MessageId === "string" ? answer.MessageId : "";
  }

  /** Closes idle connections. */
  close(): void {
    this.#requests.close();
  }
}

function parseAnswer(response: SignedResponse): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(response.body.toString("utf8"));
    return typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** SQS's JSON error: the code after the namespace of __type (or of x-amzn-ErrorType), as the SDK names its exceptions. */
function sqsErrorOf(response: SignedResponse): AwsRequestError {
  const answer = parseAnswer(response);
  const header = response.headers["x-amzn-errortype"];
  const type = (typeof answer.__type === "string" ? answer.__type : typeof header === "string" ? header : "") || `Http${response.status}`;
  const code = type.split("#").pop()?.split(":")[0] ?? type;
  const message = typeof answer.message === "string" ? answer.message : typeof answer.Message === "string" ? answer.Message : `SQS answered ${response.status}`;
  return new AwsRequestError(code, message, response.status, requestIdOf(response));
}
