// SendMessage through the SDK without its JSON writer walking the body. The
// SDK's serializer escapes a string one character at a time into a growing
// buffer: for a 400 KiB message that is the largest item of the agent's CPU
// profile (twice the cost of the whole request otherwise). JSON.stringify
// escapes a string exactly as the SDK's writer does (the same table for
// ASCII, UTF-8 for the rest, lone surrogates as lowercase \u escapes), at
// native speed. So the SDK serializes the request with a placeholder for the
// body, and the body's JSON text takes the placeholder's place before the
// request is built and signed: same bytes, and everything after the
// serializer (retries, signing, the configured HTTP handler) is the SDK's.

import { randomBytes } from "node:crypto";
import type { SendMessageCommandInput, SendMessageCommandOutput } from "@aws-sdk/client-sqs";
import type { HandlerExecutionContext, Pluggable, SerializeHandler, SerializeHandlerArguments, SerializeHandlerOutput } from "@smithy/types";

/** A placeholder JSON writes as it is (letters, digits, dashes) and no other field of a request holds. */
const PLACEHOLDER = `tidemark-message-body-${randomBytes(16).toString("hex")}`;
const QUOTED_PLACEHOLDER = Buffer.from(JSON.stringify(PLACEHOLDER));
const SERIALIZER = "serializerMiddleware";

/** The SDK's serialized request no longer holds the placeholder where the body goes: its serializer changed shape. */
export class MessageBodySerializationError extends Error {
  override name = "MessageBodySerializationError";
}

type Handler = SerializeHandler<SendMessageCommandInput, SendMessageCommandOutput>;
type Args = SerializeHandlerArguments<SendMessageCommandInput>;
type Output = Promise<SerializeHandlerOutput<SendMessageCommandOutput>>;

/** The real bodies of the requests in flight, by their handler context (shared by every middleware of one call). */
const bodies = new WeakMap<HandlerExecutionContext, string>();

function withPlaceholder(next: Handler, context: HandlerExecutionContext): Handler {
  return (args: Args): Output => {
    if (args.input.MessageBody === undefined) return next(args);
    bodies.set(context, args.input.MessageBody);
    return next({ ...args, input: { ...args.input, MessageBody: PLACEHOLDER } });
  };
}

function bodyInPlace(next: Handler, context: HandlerExecutionContext): Handler {
  return (args: Args): Output => {
    const body = bodies.get(context);
    if (body === undefined) return next(args);
    bodies.delete(context);
    const { request } = args;
    if (typeof request !== "object" || request === null || !("body" in request) || !(request.body instanceof Uint8Array)) {
      throw new MessageBodySerializationError("the SDK serialized SendMessage without a byte body: cannot place the message body");
    }
    const serialized = Buffer.from(request.body.buffer, request.body.byteOffset, request.body.byteLength);
    const at = serialized.indexOf(QUOTED_PLACEHOLDER);
    if (at < 0 || serialized.indexOf(QUOTED_PLACEHOLDER, at + 1) >= 0) {
      throw new MessageBodySerializationError("the SDK's SendMessage request does not hold the body placeholder exactly once");
    }
    request.body = Buffer.concat([serialized.subarray(0, at), Buffer.from(JSON.stringify(body)), serialized.subarray(at + QUOTED_PLACEHOLDER.length)]);
    return next(args);
  };
}

/**
 * For a SendMessage command's stack (`command.middlewareStack.use(messageBodyAsJson)`):
 * the request is byte for byte the SDK's own, without the SDK escaping the body.
 */
export const messageBodyAsJson: Pluggable<SendMessageCommandInput, SendMessageCommandOutput> = {
  applyToStack(stack) {
    stack.addRelativeTo(withPlaceholder, { name: "tidemarkMessageBodyPlaceholder", relation: "before", toMiddleware: SERIALIZER });
    stack.addRelativeTo(bodyInPlace, { name: "tidemarkMessageBodyInPlace", relation: "after", toMiddleware: SERIALIZER });
  },
};
