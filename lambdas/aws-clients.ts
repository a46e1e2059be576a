// AWS SDK clients configured the same way everywhere: against AWS, or against a
// local emulator (path-style S3, checksums only when required, dummy
// credentials when none are set).

import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";

export interface ClientOptions {
  readonly region: string;
  /** Set for an emulator or an S3-compatible store; omitted for AWS. */
  readonly endpoint?: string;
  /** SDK-level attempts per call; callers that retry themselves pass 1. */
  readonly maxAttempts?: number;
}

/** Credentials used against a local endpoint when the environment has none: emulators accept anything. */
const LOCAL_CREDENTIALS = { accessKeyId: "tidemark-local", secretAccessKey: "tidemark-local" };

/** Client settings any SDK client takes: region, attempts, and for a local endpoint the endpoint and stand-in credentials. */
export function clientConfig(options: ClientOptions) {
  const local = options.endpoint !== undefined;
  return {
    region: options.region,
    ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
    ...(local
      ? {
          endpoint: options.endpoint,
          ...(process.env.AWS_ACCESS_KEY_ID ? {} : { credentials: LOCAL_CREDENTIALS }),
        }
      : {}),
  };
}

export function makeS3Client(options: ClientOptions): S3Client {
  return new S3Client({
    ...clientConfig(options),
    forcePathStyle: options.endpoint !== undefined,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

export function makeSqsClient(options: ClientOptions): SQSClient {
  return new SQSClient(clientConfig(options));
}
