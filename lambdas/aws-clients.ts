// Every AWS SDK client of the agent and the applier is built here, the same
// way: against AWS, or against a local emulator (path-style S3, checksums only
// when required, dummy credentials when none are set), on one kind of HTTP
// handler (http-settings.ts: proxy, CA bundle, timeouts, sockets) and naming
// tidemark in its User-Agent.

import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import packageJson from "../package.json" with { type: "json" };
import { requestHandlerOptions, type HttpSettings } from "./target/http-settings.ts";

export type { HttpSettings } from "./target/http-settings.ts";

/** What every request of tidemark says it is (after the SDK's own parts of the User-Agent). */
export const USER_AGENT = `tidemark/${packageJson.version}`;

export interface ClientOptions {
  readonly region: string;
  /** Set for an emulator or an S3-compatible store; omitted for AWS. */
  readonly endpoint?: string;
  /** SDK-level attempts per call; callers that retry themselves pass 1. */
  readonly maxAttempts?: number;
  /** Proxy, CA bundle, timeouts and sockets; each defaults from the environment (http-settings.ts). */
  readonly http?: HttpSettings;
}

/** The local cloud's own clients of its in-process emulator: on loopback, never through a proxy from the environment. */
export const IN_PROCESS: HttpSettings = { proxy: false };

/** Credentials used against a local endpoint when the environment has none: emulators accept anything. */
const LOCAL_CREDENTIALS = { accessKeyId: "tidemark-local", secretAccessKey: "tidemark-local" };

/**
 * Client settings any SDK client takes: region, attempts, the HTTP handler, the User-Agent, and for a local endpoint
 * the endpoint and stand-in credentials. `env` is where the proxy and CA bundle variables are read.
 */
export function clientConfig(options: ClientOptions, env: NodeJS.ProcessEnv = process.env) {
  const local = options.endpoint !== undefined;
  return {
    region: options.region,
    customUserAgent: USER_AGENT,
    requestHandler: requestHandlerOptions(options.http ?? {}, env),
    ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
    ...(local
      ? {
          endpoint: options.endpoint,
          ...(env.AWS_ACCESS_KEY_ID ? {} : { credentials: LOCAL_CREDENTIALS }),
        }
      : {}),
  };
}

export function makeS3Client(options: ClientOptions, env: NodeJS.ProcessEnv = process.env): S3Client {
  return new S3Client({
    ...clientConfig(options, env),
    forcePathStyle: options.endpoint !== undefined,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

export function makeSqsClient(options: ClientOptions, env: NodeJS.ProcessEnv = process.env): SQSClient {
  return new SQSClient(clientConfig(options, env));
}

/**
 * Any other SDK client (EBS, EventBridge, Lambda, Backup), e.g. `makeClient(EBSClient, options)`: the class is passed
 * in so a process loads only the clients it uses.
 */
export function makeClient<C>(Client: new (config: ReturnType<typeof clientConfig>) => C, options: ClientOptions, env: NodeJS.ProcessEnv = process.env): C {
  return new Client(clientConfig(options, env));
}
