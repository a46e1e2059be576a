// The client options of the agent's AWS clients from its config: region,
// endpoint, and the HTTP settings (proxy, CA bundle) every client shares.

import type { ClientOptions, MinimumTransfer } from "../lambdas/target/index.ts";
import type { AgentConfig } from "./config.ts";

export interface ClientUse {
  /** SDK-level attempts per call; callers that retry themselves pass 1. */
  readonly maxAttempts?: number;
  /** Requests the caller keeps in flight at once. */
  readonly maxSockets?: number;
  /** A request that sends and receives nothing for this long is abandoned (the SDK's default otherwise: a minute). */
  readonly idleTimeoutMs?: number;
  /** A connection moving less than this while a request is on it is abandoned: an endpoint answering byte by byte. */
  readonly minimumTransfer?: MinimumTransfer;
}

/** What a connection must move while a request that always moves bytes is on it (the CLI's reads, the start's check of the target). */
export { READ_MINIMUM_TRANSFER } from "../lambdas/target/http-settings.ts";

/** `endpoint` is the config's S3 and SQS endpoint unless another API's is given (the EBS direct API's `ebsEndpoint`; undefined for AWS's). */
export function clientOptionsOf(config: AgentConfig, use: ClientUse = {}, endpoint: string | undefined = config.endpoint): ClientOptions {
  return {
    region: config.region,
    ...(use.maxAttempts !== undefined ? { maxAttempts: use.maxAttempts } : {}),
    ...(endpoint !== undefined ? { endpoint } : {}),
    http: {
      ...(config.proxy !== undefined ? { proxy: config.proxy } : {}),
      ...(config.caBundle !== undefined ? { caBundle: config.caBundle } : {}),
      ...(use.maxSockets !== undefined ? { maxSockets: use.maxSockets } : {}),
      ...(use.idleTimeoutMs !== undefined ? { idleTimeoutMs: use.idleTimeoutMs } : {}),
      ...(use.minimumTransfer !== undefined ? { minimumTransfer: use.minimumTransfer } : {}),
    },
  };
}
