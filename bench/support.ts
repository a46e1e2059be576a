// What every benchmark scenario needs: the local cloud's target (recording
// when each record reached the target), optionally under the AWS-latency
// model (bench/latency.ts), a counting proxy in front of the emulator for the
// source side's requests, rclone, and stats.

import { spawn } from "node:child_process";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import { cpus, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { LOCAL_REGION, startLocalTarget } from "../lambdas/local/target.ts";
import type { S3Store } from "../lambdas/store/s3-store.ts";
import type { HistorySettings } from "../lambdas/history/recorder.ts";
import { applierDirectRequests, benchBucketVersioned, limitCpu, NO_LATENCY, releaseFromApplierCpu, type LatencyModel } from "./latency.ts";

export const REGION = LOCAL_REGION;

/** Requests and request-body bytes that went through the proxy since the last reset. */
export interface Counts {
  requests: number;
  bytes: number;
}

export interface CountingProxy {
  readonly endpoint: string;
  readonly counts: Counts;
  reset(): void;
  close(): Promise<void>;
}

/** An HTTP proxy that counts what a client sends to the emulator; `observe` sees each request once its body is in, with the body's size (and the body itself when `keepBody` asks for it). */
export async function countingProxy(target: string, observe?: (req: IncomingMessage, bytes: number, body?: Buffer) => void, keepBody?: (req: IncomingMessage) => boolean): Promise<CountingProxy> {
  const { hostname, port } = new URL(target);
  const counts: Counts = { requests: 0, bytes: 0 };
  const server: Server = createServer((req, res) => {
    counts.requests += 1;
    let bytes = 0;
    const kept: Buffer[] | undefined = keepBody?.(req) ? [] : undefined;
    req.on("data", (chunk: Buffer) => {
      counts.bytes += chunk.length;
      bytes += chunk.length;
      kept?.push(chunk);
    });
    req.on("end", () => observe?.(req, bytes, kept && Buffer.concat(kept)));
    const upstream = request({ hostname, port, method: req.method, path: req.url, headers: req.headers }, (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    counts,
    reset() {
      counts.requests = 0;
      counts.bytes = 0;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export interface BenchCloud {
  readonly endpoint: string;
  readonly queueUrl: string;
  /** Where the source host's requests go: the emulator, or the WAN side of the latency model. */
  readonly sourceEndpoint: string;
  readonly sourceQueueUrl: string;
  readonly bucket: string;
  readonly store: S3Store;
  /** The emulator's process, when it runs in one of its own. */
  readonly emulatorPid?: number;
  /** When each record of a set reached the target (Date.now(), comparable across processes), by "set:path". */
  readonly appliedAt: Map<string, number>;
  appliedRecords(set: string): number;
  stop(): Promise<void>;
}

interface EmulatorEndpoints {
  readonly endpoint: string;
  /** The latency model's proxy for the source host's requests (the emulator itself without a model). */
  readonly source: string;
  /** The latency model's proxy for the applier's requests. */
  readonly applier: string;
}

/** The emulator (and the latency model's proxies) in a process of its own; resolves with its endpoints and a way to stop it. */
async function emulatorProcess(model: LatencyModel): Promise<EmulatorEndpoints & { pid: number | undefined; stop(): Promise<void> }> {
  // BENCH_EMULATOR_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the emulator during a scenario.
  const extra = (process.env.BENCH_EMULATOR_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...extra, fileURLToPath(new URL("./emulator-process.ts", import.meta.url)), JSON.stringify(model)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  releaseFromApplierCpu(child.pid);
  const endpoints = await new Promise<EmulatorEndpoints>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split("\n")[0];
      if (out.includes("\n") && line) resolve(JSON.parse(line) as EmulatorEndpoints);
    });
    child.once("exit", (code) => reject(new Error(`the emulator process exited with ${code}`)));
  });
  return {
    ...endpoints,
    pid: child.pid,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/**
 * The local cloud's target, recording when each entry reached the target. With
 * `separateEmulator`, the emulator runs in a process of its own, so the
 * applier does not share its thread (as on AWS); a latency model implies it,
 * puts its delay proxies beside the emulator, and holds this process (the
 * applier's) to the model's CPU.
 */
export async function startBenchCloud(options: { separateEmulator?: boolean; latency?: LatencyModel; history?: HistorySettings } = {}): Promise<BenchCloud> {
  const appliedAt = new Map<string, number>();
  const appliedCount = new Map<string, number>();
  const model = options.latency ?? NO_LATENCY;
  const emulator = options.separateEmulator || options.latency ? await emulatorProcess(model) : undefined;
  const cpu = limitCpu(model.lambdaCpu);
  if (cpu.problem) throw new Error(cpu.problem);
  const cloud = await startLocalTarget({
    // bench/emulator-process.ts runs startEmulator, which checks what it is sent as S3 does.
    emulator: emulator ? { endpoint: emulator.endpoint, verifiesChecksums: true } : { port: 0, versioned: benchBucketVersioned() },
    ...(emulator ? { clientEndpoint: emulator.applier } : {}),
    // The stack's: six times the applier's default timeout of 120 s. A batch of ten large messages of the initial
    // mirror can take longer than 30 s at the model's CPU, and would be handed out again while it is applied.
    visibilityTimeoutSeconds: 720,
    directRequests: applierDirectRequests(),
    ...(options.history ? { history: options.history } : {}),
    observer: {
      applied: (set, record) => {
        appliedCount.set(set, (appliedCount.get(set) ?? 0) + 1);
        if ("path" in record) appliedAt.set(`${set}:${record.path}`, Date.now());
      },
    },
    poller: { waitTimeSeconds: 1 },
  });
  const sourceEndpoint = emulator?.source ?? cloud.endpoint;
  return {
    endpoint: cloud.endpoint,
    queueUrl: cloud.queueUrl,
    sourceEndpoint,
    sourceQueueUrl: cloud.queueUrl.replace(cloud.endpoint, sourceEndpoint),
    bucket: cloud.bucket,
    store: cloud.store,
    ...(emulator?.pid !== undefined ? { emulatorPid: emulator.pid } : {}),
    appliedAt,
    appliedRecords: (set) => appliedCount.get(set) ?? 0,
    async stop() {
      await cloud.stop();
      cpu.lift();
      await emulator?.stop();
    },
  };
}

/** Runs rclone against the proxy; resolves with its wall time in ms, and why it failed if it did. */
export async function rcloneRun(args: string[], endpoint: string): Promise<{ ms: number; error?: string }> {
  // An AWS_CA_BUNDLE in the environment makes rclone's S3 backend refuse a plain-HTTP endpoint.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("AWS_")));
  Object.assign(env, {
    RCLONE_CONFIG_BENCH_TYPE: "s3",
    RCLONE_CONFIG_BENCH_PROVIDER: "Other",
    RCLONE_CONFIG_BENCH_ENDPOINT: endpoint,
    RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: "bench",
    RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: "bench",
    RCLONE_CONFIG_BENCH_REGION: REGION,
    RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: "true",
  });
  const started = performance.now();
  const error = await new Promise<string | undefined>((resolve, reject) => {
    const child = spawn("rclone", [...args, "--s3-no-check-bucket", "--config", "/dev/null"], { env, stdio: ["ignore", "ignore", "pipe"] });
    releaseFromApplierCpu(child.pid);
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (e) => reject(new Error(`rclone could not start (apt-get install rclone): ${e.message}`)));
    child.on("close", (code) => resolve(code === 0 ? undefined : `rclone ${args[0]} exited with ${code}: ${stderr.trim().split("\n").pop() ?? ""}`));
  });
  return { ms: performance.now() - started, ...(error ? { error } : {}) };
}

/** Runs rclone against the proxy and fails when it does; resolves with its wall time in ms. */
export async function rclone(args: string[], endpoint: string): Promise<number> {
  const { ms, error } = await rcloneRun(args, endpoint);
  if (error) throw new Error(error);
  return ms;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/**
 * A check that every path of the set reached the target, cheap to call every few milliseconds: it resumes at the
 * first path not seen yet. Under the latency model the bench's process is the applier's, held to its CPU: a check of
 * every path on every call took a tenth of that CPU in the steady-load run (100,000 paths through the initial mirror).
 */
export function appliedAll(cloud: Pick<BenchCloud, "appliedAt">, set: string, paths: readonly string[]): () => boolean {
  let next = 0;
  return () => {
    while (next < paths.length && cloud.appliedAt.has(`${set}:${paths[next] ?? ""}`)) next += 1;
    return next === paths.length;
  };
}

export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 1024 ** 3)} GiB, Node ${process.version}, ${process.platform}`;
}

/** One row of the results table: a scenario's measurement, its target, and whether it was met. */
export interface Result {
  readonly scenario: string;
  readonly metric: string;
  readonly tidemark: string;
  readonly peer: string;
  readonly target: string;
  readonly met: boolean | undefined;
}
