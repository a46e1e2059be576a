// The AWS-latency model of `npm run bench`: on loopback every request is
// free, so per-request CPU dominates; on AWS the round trip does. Delay
// proxies in front of the emulator give each request the latency it would
// have (the source host's WAN round trip plus the service's own latency; the
// applier pays only the service's, in-region), and the applier's process can
// be held to the CPU share Lambda gives its memory size.

import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server } from "node:http";

export interface LatencyModel {
  /** Round trip between the source host and the AWS region, added to every request the source host sends. */
  readonly wanRttMs: number;
  /** Time S3 takes to answer a request, in-region (paid by the source host and the applier alike). */
  readonly s3LatencyMs: number;
  /** Time SQS takes to answer a request, in-region. */
  readonly sqsLatencyMs: number;
  /** CPUs the applier may use (Lambda: about 1 vCPU per 1,769 MB of memory); 0 leaves it unlimited. */
  readonly lambdaCpu: number;
}

/**
 * The bench's bucket is versioned, as the stack's and the local cloud's are.
 * `npm run bench -- --unversioned-bucket` sets this for the bench and the
 * emulator processes it starts, to measure an S3-compatible store without
 * versioning (history then copies what each overwrite replaces to preserved/).
 */
export const UNVERSIONED_BUCKET_ENV = "TIDEMARK_BENCH_UNVERSIONED_BUCKET";

export function benchBucketVersioned(): boolean {
  return process.env[UNVERSIONED_BUCKET_ENV] !== "1";
}

/** `npm run bench -- --applier-sdk-only`: the applier's S3 requests all through the SDK (no direct path), to weigh the direct path. */
export const APPLIER_SDK_ONLY_ENV = "TIDEMARK_BENCH_APPLIER_SDK_ONLY";

export function applierDirectRequests(): boolean {
  return process.env[APPLIER_SDK_ONLY_ENV] !== "1";
}

export const NO_LATENCY: LatencyModel = { wanRttMs: 0, s3LatencyMs: 0, sqsLatencyMs: 0, lambdaCpu: 0 };

export function hasLatency(model: LatencyModel): boolean {
  return model.wanRttMs > 0 || model.s3LatencyMs > 0 || model.sqsLatencyMs > 0;
}

/** One line for the results table: the model a row was measured under. */
export function describeModel(model: LatencyModel): string {
  if (!hasLatency(model) && model.lambdaCpu === 0) return "loopback";
  const parts = [`WAN RTT ${model.wanRttMs} ms`, `S3 ${model.s3LatencyMs} ms`, `SQS ${model.sqsLatencyMs} ms`];
  if (model.lambdaCpu > 0) parts.push(`applier ${model.lambdaCpu} vCPU`);
  return parts.join(", ");
}

export type Side = "source" | "applier";

/** SQS's JSON protocol names its action in a header; everything else on the emulator's port is S3. */
function isSqs(req: IncomingMessage): boolean {
  return typeof req.headers["x-amz-target"] === "string";
}

/** Latency of one request from this side under the model. */
export function requestDelayMs(model: LatencyModel, side: Side, sqs: boolean): number {
  return (side === "source" ? model.wanRttMs : 0) + (sqs ? model.sqsLatencyMs : model.s3LatencyMs);
}

export interface DelayProxy {
  readonly endpoint: string;
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of the emulator that holds each answer back by the
 * request's latency under the model. The request goes upstream at once (the
 * emulator's own time overlaps the delay, as the service's does), bodies are
 * streamed; bandwidth is not modelled.
 */
export async function delayProxy(target: string, model: LatencyModel, side: Side): Promise<DelayProxy> {
  const { hostname, port } = new URL(target);
  const server: Server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const answerAt = Date.now() + requestDelayMs(model, side, isSqs(req));
    const upstream = request({ hostname, port, method: req.method, path: req.url, headers: req.headers }, (reply) => {
      const wait = Math.max(0, answerAt - Date.now());
      setTimeout(() => {
        res.writeHead(reply.statusCode ?? 502, reply.headers);
        reply.pipe(res);
      }, wait);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const CPU_CGROUP = "/sys/fs/cgroup/cpu";
const PERIOD_US = 100_000;

/** Holds this process to `cpus` CPUs until lift(). */
export interface CpuLimit {
  readonly applied: boolean;
  /** Why the limit could not be applied (not root, no cgroup v1 cpu controller). */
  readonly problem?: string;
  lift(): void;
}

let limited = false;

/** A process this one spawned runs on the source host, not in Lambda: out of the applier's CPU limit (no-op without one). */
export function releaseFromApplierCpu(pid: number | undefined): void {
  if (limited && pid !== undefined) writeFileSync(`${CPU_CGROUP}/cgroup.procs`, String(pid));
}

/**
 * The applier runs in the bench's own process: with the model's lambdaCpu,
 * that process goes into a cgroup (v1 cpu controller) with a CFS quota of
 * that many CPUs. Children (the agent, rclone, the writer) inherit a cgroup
 * when they start, so each is moved back to the root group as soon as it is
 * spawned (releaseFromApplierCpu).
 */
export function limitCpu(cpus: number): CpuLimit {
  const none: CpuLimit = { applied: false, lift: () => undefined };
  if (cpus <= 0) return none;
  const group = `${CPU_CGROUP}/tidemark-bench-applier`;
  try {
    mkdirSync(group, { recursive: true });
    writeFileSync(`${group}/cpu.cfs_period_us`, String(PERIOD_US));
    writeFileSync(`${group}/cpu.cfs_quota_us`, String(Math.round(cpus * PERIOD_US)));
    writeFileSync(`${group}/cgroup.procs`, String(process.pid));
  } catch (error) {
    return { ...none, problem: `cannot limit the applier's CPU (${(error as Error).message}); needs root and the cgroup v1 cpu controller at ${CPU_CGROUP}` };
  }
  limited = true;
  return {
    applied: true,
    lift() {
      writeFileSync(`${CPU_CGROUP}/cgroup.procs`, String(process.pid));
      limited = false;
    },
  };
}
