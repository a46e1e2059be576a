// Wires a running agent from a config: clients, journal, retrying transport,
// target status reader. Shared by `tidemark run` and `tidemark local --source`.

import { makeS3Client, makeSqsClient } from "../lambdas/aws-clients.ts";
import { readSetStatus } from "../lambdas/store/set-status.ts";
import { S3Store } from "../lambdas/store/s3-store.ts";
import { Agent } from "./agent.ts";
import { checkSources, type AgentConfig } from "./config.ts";
import { Journal } from "./journal.ts";
import type { Logger } from "./log.ts";
import { checkTarget } from "./preflight.ts";
import { AwsTransport } from "./transport/aws.ts";
import { RetryingTransport } from "./transport/retry.ts";
import type { StagedPayload, Transport } from "./transport/transport.ts";

export interface RunningAgent {
  readonly agent: Agent;
  stop(): Promise<void>;
}

/** Routes each set's calls through its own retry wrapper, so a failing set records its own error. */
class PerSetRetry implements Transport {
  readonly #bySet = new Map<string, RetryingTransport>();
  readonly #make: (set: string) => RetryingTransport;
  constructor(make: (set: string) => RetryingTransport) {
    this.#make = make;
  }
  #for(set: string): RetryingTransport {
    let transport = this.#bySet.get(set);
    if (!transport) {
      transport = this.#make(set);
      this.#bySet.set(set, transport);
    }
    return transport;
  }
  stage(payload: StagedPayload): Promise<void> {
    return this.#for(payload.set).stage(payload);
  }
  send(set: string, deduplicationId: string, body: string): Promise<void> {
    return this.#for(set).send(set, deduplicationId, body);
  }
}

export async function startAgent(config: AgentConfig, log: Logger, options: { ignorePaths?: string[] } = {}): Promise<RunningAgent> {
  checkSources(config);
  const clientOptions = { region: config.region, maxAttempts: 1, ...(config.endpoint ? { endpoint: config.endpoint } : {}) };
  const sqs = makeSqsClient(clientOptions);
  const s3 = makeS3Client(clientOptions);
  await checkTarget({ sqs, s3, queueUrl: config.queueUrl, bucket: config.bucket, ...(config.endpoint ? { endpoint: config.endpoint } : {}) });

  const journal = Journal.open(config.stateDir);
  const controller = new AbortController();
  const inner = new AwsTransport({ sqs, s3, queueUrl: config.queueUrl, bucket: config.bucket });
  const transport = new PerSetRetry(
    (set) =>
      new RetryingTransport(inner, {
        signal: controller.signal,
        onRetry: (error, attempt, delayMs) => {
          journal.recordSendError(set, error.message);
          if (attempt === 1 || attempt % 10 === 0) log.warn("send failed; retrying", { set, attempt, delayMs, error: error.message });
        },
        onRecovered: () => log.info("sending again", { set }),
      }),
  );
  const store = new S3Store(s3, config.bucket);
  const agent = new Agent({
    sets: config.sets,
    journal,
    transport,
    targetStatus: (set) => readSetStatus(store, set),
    ignorePaths: [config.stateDir, ...(options.ignorePaths ?? [])],
    compression: config.compression,
    log,
  });
  await agent.start();
  return {
    agent,
    async stop() {
      controller.abort();
      await agent.stop();
      journal.close();
      sqs.destroy();
      s3.destroy();
    },
  };
}
