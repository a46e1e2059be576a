// The local cloud's emulator: fauxqs (SQS + S3) in this process, on
// 127.0.0.1 only, and the target resources the stack would create on AWS.

import http from "node:http";
import { createServer } from "node:net";
import { CreateBucketCommand, HeadBucketCommand } from "@aws-sdk/client-s3";
import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, SetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { startFauxqs } from "fauxqs";
import { deadLetterQueueAttributes, replicationQueueAttributes, replicationQueueNames } from "../../contract/queue.ts";
import { IN_PROCESS, makeS3Client, makeSqsClient } from "../aws-clients.ts";
import { isPersistenceManager, keepLargeBodiesInFiles, LARGE_BODY_BYTES, setLargeBodyBytes } from "./emulator-large-objects.ts";
import { putBodiesFromFiles, serveBodiesFromFiles, type FileBodyStore } from "./emulator-file-bodies.ts";
import { MemoryBodies } from "./emulator-memory-bodies.ts";
import { s3StoreOf } from "./fauxqs-internals.ts";
import { joinPartsOnDisk, removeLeftoverParts } from "./emulator-multipart.ts";
import { listInByteOrder } from "./emulator-listing.ts";
import { receiveFifoBatches } from "./emulator-fifo-batches.ts";
import { pollOnlyWhenDue } from "./emulator-poll-timer.ts";
import { serveVersionedBuckets } from "./emulator-versioned-bucket.ts";
import { versionStore } from "./emulator-versions.ts";
import { holdRequests } from "./emulator-request-hold.ts";
import { listeningOnlyOn } from "./emulator-loopback.ts";
import { refuseOversizeMetadata } from "./emulator-metadata-limit.ts";
import { verifyWriteChecksums } from "./emulator-checksums.ts";

export class PortInUseError extends Error {
  override name = "PortInUseError";
}

export interface Emulator {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface TargetResources {
  readonly queueUrl: string;
  readonly dlqUrl: string;
  readonly bucket: string;
  /** The replication queue's visibility timeout. */
  readonly visibilityTimeoutSeconds: number;
}

const HOST = "127.0.0.1";
/** fauxqs answers for this account id. */
const ACCOUNT = "000000000000";

/** Fails fast, with a clear reason, when the port is taken. */
async function checkPortFree(port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "EADDRINUSE"
          ? new PortInUseError(`port ${port} on ${HOST} is already in use (is another \`tidemark local\` running? pick another with --port)`)
          : error,
      );
    });
    probe.listen(port, HOST, () => probe.close(() => resolve()));
  });
}

export interface EmulatorOptions {
  /** @default 4566 */
  readonly port?: number;
  /** With a folder, the emulator's state survives a restart. */
  readonly dataDir?: string;
  /** Every bucket keeps its versions as the stack's versioned bucket does (emulator-versioned-bucket.ts). */
  readonly versioned?: boolean;
  /** Bodies over this many bytes are kept in files, never whole in memory. @default LARGE_BODY_BYTES */
  readonly largeBodyBytes?: number;
  /** The largest source CopyObject takes (larger ones are copied in parts). @default MAX_COPY_BYTES (S3's 5 GiB) */
  readonly maxCopyObjectBytes?: number;
}

/** Starts the emulator on 127.0.0.1:port. */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const port = options.port ?? 4566;
  await checkPortFree(port);
  // Corrections of fauxqs's listing order, its FIFO receive (and its poll timer while a receive waits), its persisted bodies' size limit and its in-memory bodies and uploads (see each module).
  await listInByteOrder();
  await receiveFifoBatches();
  await pollOnlyWhenDue();
  await keepLargeBodiesInFiles();
  await joinPartsOnDisk();
  await putBodiesFromFiles();
  if (options.dataDir) removeLeftoverParts(options.dataDir);
  let fauxqsHttp: http.Server | undefined;
  let release: ReturnType<typeof holdRequests> | undefined;
  const server = await listeningOnlyOn(
    HOST,
    () =>
      startFauxqs({
        port,
        host: HOST,
        logger: false,
        ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      }),
    (opened) => {
      if (opened instanceof http.Server && !fauxqsHttp) {
        fauxqsHttp = opened;
        release = holdRequests(opened);
      }
    },
  );
  // Large bodies stay out of memory also without a dataDir: in a temp folder, removed on stop.
  let memory: MemoryBodies | undefined;
  try {
    const store = await s3StoreOf<FileBodyStore>(server, ["putObject"]);
    const largeBodyBytes = options.largeBodyBytes ?? LARGE_BODY_BYTES;
    if (isPersistenceManager(store.persistence)) setLargeBodyBytes(store.persistence, largeBodyBytes);
    else store.persistence = memory = new MemoryBodies({ largeBodyBytes });
    if (!fauxqsHttp || !release) throw new Error("internal: fauxqs opened no HTTP server");
    const httpServer = fauxqsHttp;
    const copyLimit = options.maxCopyObjectBytes !== undefined ? { maxCopyObjectBytes: options.maxCopyObjectBytes } : {};
    const versions = options.versioned ? await versionStore(server) : undefined;
    release(() => {
      serveBodiesFromFiles(httpServer, store, copyLimit);
      // The versioned layer answers first, in the same server: one HTTP hop per request.
      if (versions) serveVersionedBuckets(httpServer, versions, copyLimit);
      refuseOversizeMetadata(httpServer);
      // Outermost: a write whose checksum does not match reaches no layer that writes.
      verifyWriteChecksums(httpServer);
    });
  } catch (error) {
    await server.stop();
    memory?.close();
    throw error;
  }
  const stopping = async (stop: () => Promise<void>) => {
    try {
      await stop();
    } finally {
      memory?.close();
    }
  };
  return { endpoint: `http://${HOST}:${server.port}`, port: server.port, stop: () => stopping(() => server.stop()) };
}

async function ensureQueue(sqs: SQSClient, name: string, attributes: Record<string, string>): Promise<{ url: string; arn: string }> {
  let url: string | undefined;
  try {
    url = (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl;
  } catch (error) {
    if (!/NonExistentQueue|QueueDoesNotExist/.test((error as Error).name)) throw error;
  }
  if (url) {
    // A queue kept from an earlier run takes today's definition; FifoQueue never changes, and fauxqs takes the
    // high-throughput pair only at creation (which every local queue had).
    const { FifoQueue, DeduplicationScope, FifoThroughputLimit, ...changeable } = attributes;
    await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: changeable }));
  }
  url ??= (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }))).QueueUrl;
  if (!url) throw new Error(`the emulator returned no URL for queue ${name}`);
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn;
  if (!arn) throw new Error(`the emulator returned no ARN for queue ${name}`);
  return { url, arn };
}

/**
 * Creates (or finds, on a persisted emulator) the FIFO queue with its FIFO
 * dead-letter queue and the bucket, with the attributes the CDK stack sets
 * (contract/queue.ts).
 */
export async function ensureTargetResources(options: {
  endpoint: string;
  region: string;
  queueName?: string;
  dlqName?: string;
  bucket?: string;
  visibilityTimeoutSeconds?: number;
  maxReceiveCount?: number;
}): Promise<TargetResources> {
  const names = replicationQueueNames("tidemark");
  const queueName = options.queueName ?? names.queue;
  const dlqName = options.dlqName ?? names.deadLetterQueue;
  const bucket = options.bucket ?? "tidemark";
  const visibilityTimeoutSeconds = options.visibilityTimeoutSeconds ?? 30;
  const sqs = makeSqsClient({ region: options.region, endpoint: options.endpoint, http: IN_PROCESS });
  const s3 = makeS3Client({ region: options.region, endpoint: options.endpoint, http: IN_PROCESS });
  try {
    const dlq = await ensureQueue(sqs, dlqName, deadLetterQueueAttributes());
    await ensureQueue(
      sqs,
      queueName,
      replicationQueueAttributes({
        visibilityTimeoutSeconds,
        deadLetterTargetArn: dlq.arn,
        ...(options.maxReceiveCount !== undefined ? { maxReceiveCount: options.maxReceiveCount } : {}),
      }),
    );
    try {
      await s3.send(new HeadBucketCommand({ Bucket: bucket }));
    } catch {
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    }
    // fauxqs names queues by a virtual host that does not resolve; the path is what it routes on.
    return {
      queueUrl: `${options.endpoint}/${ACCOUNT}/${queueName}`,
      dlqUrl: `${options.endpoint}/${ACCOUNT}/${dlqName}`,
      bucket,
      visibilityTimeoutSeconds,
    };
  } finally {
    sqs.destroy();
    s3.destroy();
  }
}
