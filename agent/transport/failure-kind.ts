// Which failures of a transport call are worth what: transient ones (network,
// throttling, 5xx) are retried quickly forever; the ones that need an
// operator (credentials, a missing queue or bucket) slowly forever, since
// fixing them resumes the stream; and refusals of one payload or message
// (a 4xx about the request itself, a size limit) will not change however
// often they are retried, so after a few tries that record leaves the stream.

import { isTransientAwsError } from "../../lambdas/target/index.ts";
import { DeliveryRefusedError, TransportError } from "./transport.ts";

export type FailureKind = "transient" | "operator" | "refused";

/** Errors about who is asking or where to: nothing in the payload causes them, so no record is skipped for them. */
const OPERATOR_ERRORS =
  /AccessDenied|InvalidAccessKeyId|InvalidClientTokenId|SignatureDoesNotMatch|InvalidSignature|ExpiredToken|TokenRefreshRequired|RequestTimeTooSkewed|UnrecognizedClient|MissingAuthentication|InvalidSecurity|NotAuthorized|AuthFailure|CredentialsProvider|NoSuchBucket|NonExistentQueue|QueueDoesNotExist|KMS/;

/** Errors S3 and SQS give about the request's content: the same bytes get the same answer. */
const REFUSED_ERRORS =
  /EntityTooLarge|EntityTooSmall|InvalidPart|MalformedXML|InvalidArgument|InvalidRequest|BadDigest|InvalidDigest|XAmzContentSHA256Mismatch|KeyTooLong|MetadataTooLarge|MaxMessageSize|MessageTooLong|InvalidMessageContents|InvalidParameterValue/;

/** HTTP statuses that answer the request itself; 401/403/404 are about credentials or a missing resource, 408 a timeout. */
const REFUSED_STATUSES = new Set([400, 405, 411, 413, 414, 416, 422]);

interface ErrorShape {
  name?: string;
  code?: string;
  status?: number;
  $metadata?: { httpStatusCode?: number };
}

export function classifyFailure(error: unknown): FailureKind {
  if (error instanceof DeliveryRefusedError) return "refused";
  if (error instanceof TransportError) return error.retryable ? "transient" : "operator";
  if (isTransientAwsError(error)) return "transient";
  if (typeof error !== "object" || error === null) return "operator";
  const e = error as ErrorShape;
  const name = `${e.name ?? ""} ${e.code ?? ""}`;
  if (OPERATOR_ERRORS.test(name)) return "operator";
  if (REFUSED_ERRORS.test(name)) return "refused";
  const status = e.$metadata?.httpStatusCode ?? (typeof e.status === "number" ? e.status : undefined);
  if (status !== undefined && REFUSED_STATUSES.has(status)) return "refused";
  // Anything unknown is not worth skipping a record for: an operator can see it in status and fix it.
  return "operator";
}
