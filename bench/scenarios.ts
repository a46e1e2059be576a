// The benchmark scenarios of BENCHMARKS.md. Each runs tidemark end to end on
// the emulator and, where there is one, rclone against the same emulator in
// the same run, and reports medians over the runs.

import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfig } from "../agent/config.ts";
import { silentLogger } from "../agent/log.ts";
import { startAgent, type RunningAgent } from "../agent/runtime.ts";
import { formatBytes } from "../agent/format.ts";
import { BLOCK_SIZE } from "../contract/wire.ts";
import { Applier } from "../lambdas/applier/applier.ts";
import { createHandler } from "../lambdas/applier/handler.ts";
import type { SQSRecord } from "aws-lambda";
import { inlinePut, messageBody, signedSqsAttributes } from "./messages.ts";
import { describeModel, hasLatency, NO_LATENCY, releaseFromApplierCpu, type LatencyModel } from "./latency.ts";
import { appliedAll, countingProxy, median, percentile, rclone, rcloneRun, REGION, startBenchCloud, until, type BenchCloud, type CountingProxy, type Result } from "./support.ts";

const MiB = 1024 * 1024;

async function workDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "tidemark-bench-"));
}

/** An agent config for the tree that sends its requests to `endpoint` (a counting proxy, the latency model's source side, or the emulator). */
export function agentConfig(cloud: BenchCloud, endpoint: string, dir: string, tree: string, set: string): string {
  const file = join(dir, `${set}.config.json`);
  writeFileSync(
    file,
    JSON.stringify({
      region: REGION,
      endpoint,
      queueUrl: cloud.queueUrl.replace(cloud.endpoint, endpoint),
      bucket: cloud.bucket,
      stateDir: join(dir, `${set}-state`),
      sets: [{ name: set, path: tree }],
    }),
  );
  return file;
}

/** An agent on the tree in this process. */
function agentOn(cloud: BenchCloud, proxy: CountingProxy, dir: string, tree: string, set: string): Promise<RunningAgent> {
  return startAgent(loadConfig(agentConfig(cloud, proxy.endpoint, dir, tree, set)), silentLogger);
}

/** Waits until the target applied every record the agent journaled for the set. */
async function caughtUp(cloud: BenchCloud, agent: RunningAgent, set: string, timeoutMs: number): Promise<void> {
  await until(
    () => {
      const counters = agent.agent.journal.sets.counters(set);
      return counters.backlogRecords === 0 && cloud.appliedRecords(set) >= counters.nextSeq - 1;
    },
    timeoutMs,
    `set ${set} to reach the target`,
  );
}

/** Writes the initial mirror's tree; returns the set paths of its files. */
function smallTree(root: string, files: number, large: number): string[] {
  const paths: string[] = [];
  for (let i = 0; i < files; i++) {
    const dir = join(root, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) mkdirSync(dir, { recursive: true });
    const size = 100 + Math.floor(Math.random() * (16 * 1024 - 100));
    // Half compressible text, half random: real trees hold both.
    const content = i % 2 === 0 ? Buffer.from(`line ${i} of a text file\n`.repeat(Math.ceil(size / 24))).subarray(0, size) : randomBytes(size);
    writeFileSync(join(dir, `f${i}.dat`), content);
    paths.push(`d${Math.floor(i / 100)}/f${i}.dat`);
  }
  for (let i = 0; i < large; i++) {
    writeFileSync(join(root, `large-${i}.bin`), randomBytes(8 * MiB));
    paths.push(`large-${i}.bin`);
  }
  return paths;
}

/**
 * Initial mirror: `tidemark run` and rclone copy (16 and 64 transfers) each
 * copy the same tree to the same emulator, timed with nothing but the latency
 * model between them and it. Requests are counted in a run of their own,
 * through a counting proxy, so the proxy's cost is in neither timing.
 */
export async function initialMirror(runs: number, scale: number, model: LatencyModel = NO_LATENCY): Promise<Result[]> {
  const files = Math.round(5000 * scale);
  const times = { tidemark: [] as number[], rclone16: [] as number[], rclone64: [] as number[] };
  const rcloneCopy = (tree: string, cloud: BenchCloud, endpoint: string, transfers: number, prefix: string) =>
    rclone(["copy", tree, `bench:${cloud.bucket}/${prefix}`, "--transfers", String(transfers), "--checkers", String(transfers)], endpoint);
  const mirrorOnce = async (counting: boolean) => {
    const dir = await workDir();
    const tree = join(dir, "tree");
    const paths = smallTree(tree, files, 5);
    const cloud = await startBenchCloud({ separateEmulator: true, latency: model });
    const proxy = counting ? await countingProxy(cloud.sourceEndpoint) : undefined;
    const endpoint = proxy?.endpoint ?? cloud.sourceEndpoint;
    try {
      // `tidemark run` as a process of its own, as rclone is: on a source host the agent never shares a thread with the target.
      const started = performance.now();
      const agent = await agentProcess(agentConfig(cloud, endpoint, dir, tree, "initial"));
      // Resumes at the first path not applied yet: a check of every path every 20 ms cost the applier's process CPU.
      await until(appliedAll(cloud, "initial", paths), 600_000, "every file to reach the target");
      const tidemark = { ms: performance.now() - started, requests: proxy?.counts.requests ?? 0 };
      agent.kill("SIGINT");
      await new Promise((resolve) => agent.once("exit", resolve));
      proxy?.reset();
      const rclone16 = { ms: await rcloneCopy(tree, cloud, endpoint, 16, "rclone16"), requests: proxy?.counts.requests ?? 0 };
      const rclone64 = counting ? undefined : await rcloneCopy(tree, cloud, endpoint, 64, "rclone64");
      return { tidemark, rclone16, rclone64 };
    } finally {
      await proxy?.close();
      await cloud.stop();
      await rm(dir, { recursive: true, force: true });
    }
  };
  for (let run = 0; run < runs; run++) {
    const timed = await mirrorOnce(false);
    times.tidemark.push(timed.tidemark.ms);
    times.rclone16.push(timed.rclone16.ms);
    times.rclone64.push(timed.rclone64 ?? 0);
  }
  const counted = await mirrorOnce(true);
  const t = median(times.tidemark);
  const r16 = median(times.rclone16);
  const r64 = median(times.rclone64);
  const label = `initial mirror, ${files} small files + 5 × 8 MiB (${describeModel(model)})`;
  const seconds = (ms: number) => (ms / 1000).toFixed(2);
  // Over a WAN, tidemark packs many files a request: the targets ask for a margin that loopback cannot show.
  const wan = hasLatency(model);
  return [
    {
      scenario: label,
      metric: "time to target (s)",
      tidemark: seconds(t),
      peer: `rclone copy --transfers 16 ${seconds(r16)}, --transfers 64 ${seconds(r64)}`,
      target: wan ? "≤ 0.5 × rclone 16, ≤ 1.0 × rclone 64" : "≤ 1.0 × rclone 16",
      met: wan ? t <= 0.5 * r16 && t <= r64 : t <= r16,
    },
    {
      scenario: label,
      metric: "requests from the source host (a counting run of its own)",
      tidemark: String(counted.tidemark.requests),
      peer: `rclone copy --transfers 16 ${counted.rclone16.requests}`,
      target: "≥ 10× fewer",
      met: counted.tidemark.requests * 10 <= counted.rclone16.requests,
    },
  ];
}

export async function deltaChange(runs: number): Promise<Result[]> {
  const sent = { tidemark: [] as number[], rclone: [] as number[] };
  let peerNote = "";
  for (let run = 0; run < runs; run++) {
    const dir = await workDir();
    const tree = join(dir, "tree");
    mkdirSync(tree);
    const file = join(tree, "disk.img");
    writeFileSync(file, randomBytes(256 * MiB));
    const cloud = await startBenchCloud();
    const proxy = await countingProxy(cloud.endpoint);
    try {
      const agent = await agentOn(cloud, proxy, dir, tree, "delta");
      await caughtUp(cloud, agent, "delta", 600_000);
      // rclone uploads a file this large in parts; the emulator refuses its CompleteMultipartUpload (not ours),
      // which does not change what rclone sends: the bytes through the proxy are the measurement.
      const once = ["--s3-chunk-size", "8M", "--retries", "1", "--low-level-retries", "1"];
      const first = await rcloneRun(["copy", tree, `bench:${cloud.bucket}/rclone`, ...once], proxy.endpoint);
      if (first.error) peerNote = " (the emulator refused rclone's multipart completion)";

      const before = agent.agent.journal.sets.counters("delta").bytesSent;
      const fd = openSync(file, "r+");
      writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, 100 * MiB + 12345);
      closeSync(fd);
      agent.agent.hint("delta", "disk.img");
      await agent.agent.processHints("delta");
      await caughtUp(cloud, agent, "delta", 600_000);
      sent.tidemark.push(agent.agent.journal.sets.counters("delta").bytesSent - before);
      const object = await cloud.store.get("data/delta/disk.img");
      const hash = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
      if (!object || hash(object.body) !== hash(readFileSync(file))) throw new Error("the target does not hold the changed file");
      await agent.stop();

      proxy.reset();
      await rcloneRun(["copy", tree, `bench:${cloud.bucket}/rclone`, ...once], proxy.endpoint);
      sent.rclone.push(proxy.counts.bytes);
    } finally {
      await proxy.close();
      await cloud.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }
  const t = median(sent.tidemark);
  return [
    {
      scenario: "64 KiB changed inside a 256 MiB file",
      metric: "bytes sent",
      tidemark: formatBytes(t),
      peer: `rclone copy ${formatBytes(median(sent.rclone))}${peerNote}`,
      target: `≤ ${formatBytes(2 * BLOCK_SIZE)}`,
      met: t <= 2 * BLOCK_SIZE,
    },
  ];
}

/** The `tidemark` command as users start it (the bin's launcher, not cli.ts: it turns the compile cache on first). */
const TIDEMARK = fileURLToPath(new URL("../agent/bin/tidemark.js", import.meta.url));

/** `tidemark run` as a process of its own, as on a source host; resolves once it replicates. */
export async function agentProcess(config: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [TIDEMARK, "run", "--config", config], { stdio: ["ignore", "ignore", "pipe"] });
  releaseFromApplierCpu(child.pid);
  await new Promise<void>((resolve, reject) => {
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes("replicating")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`tidemark run exited with ${code}: ${stderr}`)));
  });
  return child;
}

export async function steadyLoad(scale: number, seconds: number, model: LatencyModel = NO_LATENCY): Promise<Result[]> {
  const files = Math.round(100_000 * scale);
  const rate = 500;
  return withReplicatedTree(files, "steady", model, async ({ dir, tree, paths, cloud, agent }) => {
    // Each change writes a file not written before in this run, so its first apply afterwards is its arrival.
    const changed = [...paths].sort(() => Math.random() - 0.5).slice(0, Math.min(files, rate * seconds));
    for (const path of changed) cloud.appliedAt.delete(`steady:${path}`);
    writeFileSync(join(dir, "paths.json"), JSON.stringify(changed));
    // rclone's copy of the tree starts from the tree as it is now, copied untimed and straight to the emulator (under
    // the latency model a first copy of 100,000 files through the WAN side takes most of an hour): the timed sync
    // below is the one that finds and copies the changes, as a periodic sync would.
    await rclone(["copy", tree, `bench:${cloud.bucket}/rclone`, "--transfers", "16", "--checkers", "16"], cloud.endpoint);
    const out = join(dir, "written.json");
    await new Promise<void>((resolve, reject) => {
      const writer = spawn(process.execPath, [fileURLToPath(new URL("./writer.ts", import.meta.url)), tree, join(dir, "paths.json"), String(rate), out], { stdio: "inherit" });
      releaseFromApplierCpu(writer.pid);
      writer.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`the writer exited with ${code}`))));
    });
    const writtenAt = JSON.parse(readFileSync(out, "utf8")) as Record<string, number>;
    await until(appliedAll(cloud, "steady", changed), 300_000, "every change to arrive");
    const lags = changed.map((path) => (cloud.appliedAt.get(`steady:${path}`) ?? 0) - (writtenAt[path] ?? 0));
    agent.kill("SIGINT");
    // --checksum: the listing's ETags (MD5) find the changes, not a HEAD of every object for its mtime.
    const sync = await rclone(["sync", tree, `bench:${cloud.bucket}/rclone`, "--transfers", "8", "--checkers", "16", "--checksum"], cloud.sourceEndpoint);
    const p99 = percentile(lags, 99);
    return [
      {
        scenario: `steady load, ${rate} changes/s over ${files} files for ${seconds} s (${describeModel(model)})`,
        metric: "write-to-target lag p50 / p99 (ms)",
        tidemark: `${percentile(lags, 50).toFixed(0)} / ${p99.toFixed(0)}`,
        peer: `rclone sync --checksum of the changed tree ${(sync / 1000).toFixed(1)} s`,
        target: "p99 ≤ 1000",
        met: p99 <= 1000,
      },
    ];
  });
}

/** A tree of `files` one-line files, 1,000 a folder; returns their paths. */
function flatTree(tree: string, files: number): string[] {
  const paths: string[] = [];
  for (let i = 0; i < files; i++) {
    if (i % 1000 === 0) mkdirSync(join(tree, `d${i / 1000}`), { recursive: true });
    const path = `d${Math.floor(i / 1000)}/f${i}`;
    writeFileSync(join(tree, path), `initial ${i}\n`);
    paths.push(path);
  }
  return paths;
}

/**
 * A flat tree of `files` files replicated by `tidemark run` (its own process) until the target has it all; cleaned up after `work`.
 * The agent's requests pay the latency model's source side.
 */
async function withReplicatedTree<T>(
  files: number,
  set: string,
  model: LatencyModel,
  work: (setup: { dir: string; tree: string; paths: string[]; cloud: BenchCloud; config: string; agent: ChildProcess }) => Promise<T>,
): Promise<T> {
  const dir = await workDir();
  const tree = join(dir, "tree");
  const paths = flatTree(tree, files);
  const cloud = await startBenchCloud({ latency: model });
  let agent: ChildProcess | undefined;
  try {
    const config = agentConfig(cloud, cloud.sourceEndpoint, dir, tree, set);
    agent = await agentProcess(config);
    await until(appliedAll(cloud, set, paths), 1_800_000, "the initial mirror");
    return await work({ dir, tree, paths, cloud, config, agent });
  } finally {
    agent?.kill("SIGKILL");
    await cloud.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Marker latency: a quiesced 100,000-file set replicated by `tidemark run`,
 * then `tidemark task` as a script runs it. Measured: from the command's
 * start to the marker in the journal (the barrier scan of the whole set
 * included; what the application's downtime is made of), and to the
 * target's result of the snapshot.
 */
export async function markerLatency(runs: number, scale: number): Promise<Result[]> {
  const files = Math.round(100_000 * scale);
  return withReplicatedTree(files, "marker", NO_LATENCY, async ({ config }) => {
    const journaled: number[] = [];
    const done: number[] = [];
    for (let run = 0; run < runs; run++) {
      const started = performance.now();
      const task = await runTidemark(["task", "marker", "--wait", "--json", "--config", config]);
      done.push(performance.now() - started);
      const outcome = JSON.parse(task) as { journaledMs: number; result: { status: string } };
      if (outcome.result.status !== "succeeded") throw new Error(`the marker's snapshot ${outcome.result.status}`);
      journaled.push(outcome.journaledMs);
    }
    const p50 = median(journaled);
    return [
      {
        scenario: `marker on a quiesced set of ${files} files (tidemark task, agent running)`,
        metric: "command start to marker journaled / to snapshot done (ms)",
        tidemark: `${p50.toFixed(0)} / ${median(done).toFixed(0)}`,
        peer: "-",
        target: "journaled ≤ 1000",
        met: p50 <= 1000,
      },
    ];
  });
}

/** Resident set size of a process, from /proc (bytes). */
function rssOf(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0) * 1024;
}

/**
 * Agent memory: `tidemark run` on 1,000,000 one-line files in 10,000
 * folders. Its RSS is sampled from start through the initial scan and the
 * watch of every folder, then for 30 s of sending; the peak is reported.
 */
export async function agentMemory(scale: number): Promise<Result[]> {
  const files = Math.round(1_000_000 * scale);
  const dir = await workDir();
  const tree = join(dir, "tree");
  for (let i = 0; i < files; i++) {
    if (i % 100 === 0) mkdirSync(join(tree, `d${Math.floor(i / 10_000)}`, `e${Math.floor(i / 100)}`), { recursive: true });
    writeFileSync(join(tree, `d${Math.floor(i / 10_000)}`, `e${Math.floor(i / 100)}`, `f${i}`), `file ${i}\n`);
  }
  const cloud = await startBenchCloud();
  const proxy = await countingProxy(cloud.endpoint);
  let agent: ChildProcess | undefined;
  let peak = 0;
  const sampler = setInterval(() => {
    if (agent?.pid !== undefined) peak = Math.max(peak, rssOf(agent.pid));
  }, 250);
  try {
    const started = performance.now();
    agent = await agentProcess(agentConfig(cloud, proxy.endpoint, dir, tree, "memory"));
    const ready = (performance.now() - started) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    return [
      {
        scenario: `agent watching ${files} files in ${Math.ceil(files / 100)} folders (tidemark run: initial scan, watch, 30 s of sending)`,
        metric: "peak RSS",
        tidemark: `${formatBytes(peak)} (ready after ${ready.toFixed(0)} s)`,
        peer: "-",
        target: "≤ 512 MiB",
        met: peak <= 512 * MiB,
      },
    ];
  } finally {
    clearInterval(sampler);
    agent?.kill("SIGKILL");
    await proxy.close();
    await cloud.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs a tidemark command to completion and returns its stdout; throws with its stderr when it fails. */
function runTidemark(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TIDEMARK, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    releaseFromApplierCpu(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("exit", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`tidemark ${args[0] ?? ""} exited with ${code}: ${stderr}`))));
  });
}

/** A store that counts the calls made to it (each one S3 request for the applier's small objects), by method. */
function countingStore<T extends object>(store: T): { store: T; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const counted = new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function" || typeof property !== "string") return value;
      return (...args: unknown[]): unknown => {
        calls.set(property, (calls.get(property) ?? 0) + 1);
        return Reflect.apply(value, target, args);
      };
    },
  });
  return { store: counted, calls };
}

/** One full FIFO batch of 10 messages of `records` puts of 1 KiB each, as the event source mapping delivers it. */
function throughputBatch(set: string, records: number, after = 0): SQSRecord[] {
  let seq = after;
  return Array.from({ length: 10 }, (_, m) => {
    const body = messageBody(
      set,
      Array.from({ length: records }, () => {
        seq += 1;
        return inlinePut(seq, `dir${seq % 20}/file-${seq}`, Buffer.from(randomBytes(512).toString("hex")));
      }),
    );
    return {
      messageId: `m${m}`,
      receiptHandle: `r${m}`,
      body,
      attributes: { ApproximateReceiveCount: "1", SentTimestamp: String(Date.now()), SenderId: "bench", ApproximateFirstReceiveTimestamp: String(Date.now()), MessageGroupId: set },
      // Signed as the agent signs them: checking the signatures is part of the applier's work.
      messageAttributes: signedSqsAttributes(set, body),
      md5OfBody: "",
      eventSource: "aws:sqs",
      eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
      awsRegion: REGION,
    };
  });
}

export async function applierThroughput(runs: number, model: LatencyModel = NO_LATENCY): Promise<Result[]> {
  const rows: Result[] = [];
  // Large messages (the initial mirror's shape) and one-record ones (a trickle's): the per-message cost shows in the second.
  for (const records of [200, 1]) {
    const rates: { records: number; bytes: number; requests: number; cpuUs: number }[] = [];
    for (let run = 0; run < runs; run++) {
      const cloud = await startBenchCloud({ latency: model });
      try {
        const counted = countingStore(cloud.store);
        const handler = createHandler(new Applier({ store: counted.store, log: () => {} }), () => {});
        // The set's first message (its owner, status and history checkpoint 0) is not what is measured.
        await handler({ Records: throughputBatch("throughput", 1).slice(0, 1) });
        counted.calls.clear();
        const batch = throughputBatch("throughput", records, 1);
        const cpu = process.cpuUsage();
        const started = performance.now();
        const response = await handler({ Records: batch });
        const seconds = (performance.now() - started) / 1000;
        const used = process.cpuUsage(cpu);
        if (response.batchItemFailures.length > 0) throw new Error("the applier failed part of the batch");
        const requests = [...counted.calls.values()].reduce((a, b) => a + b, 0);
        rates.push({ records: (10 * records) / seconds, bytes: (10 * records * 1024) / seconds, requests, cpuUs: used.user + used.system });
      } finally {
        await cloud.stop();
      }
    }
    const requests = median(rates.map((r) => r.requests));
    rows.push({
      scenario: `applier, one batch of 10 messages × ${records} record${records === 1 ? "" : "s"} of 1 KiB (${describeModel(model)})`,
      metric: "records/s, MB/s per invocation; store requests per message; applier CPU per record",
      tidemark: `${median(rates.map((r) => r.records)).toFixed(0)}, ${(median(rates.map((r) => r.bytes)) / 1e6).toFixed(2)}; ${(requests / 10).toFixed(1)}; ${(median(rates.map((r) => r.cpuUs)) / (10 * records) / 1000).toFixed(2)} ms`,
      peer: "-",
      target: "(measured)",
      met: undefined,
    });
  }
  return rows;
}
