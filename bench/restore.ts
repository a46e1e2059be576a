// Restore (issue 17, "a DR tool is worth what it restores"): a snapshot of a
// tree of small files, 5 × 8 MiB and one large file, restored by
// `tidemark restore` (a process of its own, as on a recovery host) into an
// empty folder, against `rclone copy` of the same objects from the same
// emulator into another. Both timed with nothing but the latency model in
// their path; requests counted in a run of their own, through a counting
// proxy. The snapshot is taken of objects put straight into the bucket as the
// applier writes them (what is measured is the restore, not the mirror).
// Memory is held to what the restore keeps in flight, not the files' sizes:
// the whole restore's peak within the CLI's own (a snapshot of one small file
// restored) plus the in-flight budget (32 files at once, each GET at most
// 8 MiB, and 8 parts of 8 MiB fetched ahead); and the large file restored
// alone (a set of its own) peaks no higher than a file of half its size
// restored alone, within an eighth of the difference (a restore that held
// the file whole would add all of it).
// BENCH_RESTORE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the restore.

import { spawn } from "node:child_process";
import { createHash, randomBytes, randomFillSync } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { formatBytes } from "../agent/format.ts";
import { DEFAULT_PART_BYTES, DEFAULT_PARTS_AHEAD } from "../agent/restore-content.ts";
import { WRITE_CONCURRENCY } from "../agent/restore-writer.ts";
import { DIRECT_READ_BYTES } from "../lambdas/target/restore-store.ts";
import { mapConcurrent } from "../contract/async.ts";
import { dataKey, dataPrefix, encodeMeta } from "../contract/layout.ts";
import { takeSnapshot } from "../lambdas/tasks/snapshots.ts";
import { describeModel, NO_LATENCY, releaseFromApplierCpu, type LatencyModel } from "./latency.ts";
import { agentConfig } from "./scenarios.ts";
import { countingProxy, median, rclone, startBenchCloud, type BenchCloud, type Result } from "./support.ts";

const MiB = 1024 * 1024;
const SET = "restore";
/** The large file alone, one of half its size alone, and one small file alone (the CLI's own peak): sets of their own in the same bucket. */
const LARGE_SET = "restore-large";
const HALF_SET = "restore-half";
const ONE_SET = "restore-one";
/** What a restore may hold in memory at once besides the CLI itself: every file in flight at its largest GET, and the parts fetched ahead. */
const IN_FLIGHT_BYTES = WRITE_CONCURRENCY * DIRECT_READ_BYTES + DEFAULT_PARTS_AHEAD * DEFAULT_PART_BYTES;

const TIDEMARK = fileURLToPath(new URL("../agent/bin/tidemark.js", import.meta.url));

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Puts one file's object as the applier writes it (content, mode, mtime, sha256). */
async function putFile(cloud: BenchCloud, path: string, body: Uint8Array, set = SET): Promise<void> {
  const meta = encodeMeta({ kind: "file", mode: 0o644, mtimeNs: `${Date.now()}000000`, sha256: sha256(body) });
  await cloud.store.put(dataKey(set, path), body, meta);
}

/** The large file, streamed into the bucket in parts: never whole in this process's memory. */
async function putLarge(cloud: BenchCloud, path: string, bytes: number, set = SET): Promise<void> {
  const block = randomFillSync(Buffer.allocUnsafe(8 * MiB));
  // Each 8 MiB block differs in its first 8 bytes: the content neither compresses nor repeats.
  const at = (offset: number, length: number) => {
    const out = Buffer.allocUnsafe(length);
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const n = Math.min(length - done, 8 * MiB - (pos % (8 * MiB)));
      block.writeBigUInt64BE(BigInt(Math.floor(pos / (8 * MiB))), 0);
      block.copy(out, done, pos % (8 * MiB), (pos % (8 * MiB)) + n);
      done += n;
    }
    return out;
  };
  const hash = createHash("sha256");
  for (let offset = 0; offset < bytes; offset += 8 * MiB) hash.update(at(offset, Math.min(8 * MiB, bytes - offset)));
  const digest = hash.digest("hex");
  const meta = encodeMeta({ kind: "file", mode: 0o644, mtimeNs: `${Date.now()}000000`, sha256: digest });
  if (!cloud.store.putStreamed) throw new Error("the bench's store cannot write a body in parts");
  await cloud.store.putStreamed(dataKey(set, path), { size: bytes, sha256: digest, read: async (offset, length) => at(offset, length) }, meta);
}

/** Peak resident memory (VmHWM) of a running process, in bytes; 0 once it is gone. */
function peakRss(pid: number): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU time (user + system) a running process has used, in ms; 0 once it is gone. */
function cpuMs(pid: number): number {
  try {
    // Fields 14 and 15 of /proc/PID/stat, after the command name in parentheses.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/** `tidemark restore` as a process of its own; resolves with its wall time, its peak RSS, its CPU time (sampled to 50 ms) and its summary. */
async function tidemarkRestore(config: string, to: string, set = SET): Promise<{ ms: number; peak: number; cpu: number; files: number; bytes: number }> {
  const extra = (process.env.BENCH_RESTORE_ARGS ?? "").split(" ").filter(Boolean);
  const started = performance.now();
  const child = spawn(process.execPath, [...extra, TIDEMARK, "restore", set, "--snapshot", "latest", "--to", to, "--json", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  releaseFromApplierCpu(child.pid);
  let peak = 0;
  let cpu = 0;
  const sample = setInterval(() => {
    peak = Math.max(peak, peakRss(child.pid ?? 0));
    cpu = Math.max(cpu, cpuMs(child.pid ?? 0));
  }, 50);
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearInterval(sample);
  const ms = performance.now() - started;
  if (code !== 0) throw new Error(`tidemark restore exited with ${code}: ${err.trim().split("\n").slice(-3).join(" / ")}`);
  const summary = JSON.parse(out) as { files: number; bytes: number };
  return { ms, peak, cpu, files: summary.files, bytes: summary.bytes };
}

/**
 * `files` small files (100 B–16 KiB) in folders of 100, 5 × 8 MiB and one
 * file of `largeBytes`, restored `runs` times by each tool.
 */
export async function restoreSnapshot(runs: number, scale: number, largeBytes: number, model: LatencyModel = NO_LATENCY): Promise<Result[]> {
  const files = Math.round(5000 * scale);
  const dir = await mkdtemp(join(tmpdir(), "tidemark-bench-"));
  const cloud = await startBenchCloud({ separateEmulator: true, latency: model, history: { days: 0 } });
  try {
    process.stderr.write(`  putting ${files} small files, 5 × 8 MiB and ${formatBytes(largeBytes)} into the bucket...\n`);
    const small = Array.from({ length: files }, (_, i) => i);
    await mapConcurrent(small, 32, async (i) => putFile(cloud, `d${Math.floor(i / 100)}/f${i}.dat`, randomBytes(100 + Math.floor(Math.random() * (16 * 1024 - 100)))));
    for (let i = 0; i < 5; i++) await putFile(cloud, `large-${i}.bin`, randomBytes(8 * MiB));
    if (largeBytes > 0) await putLarge(cloud, "huge.bin", largeBytes);
    const summary = await takeSnapshot(cloud.store, SET, { id: "snap-bench", taskId: "bench", seq: null }, { now: new Date() });
    // The sets of the memory rows: the large file alone, and one small file (the CLI's own peak).
    const halfBytes = Math.floor(largeBytes / 2);
    if (largeBytes > 0) await putLarge(cloud, "huge.bin", largeBytes, LARGE_SET);
    if (largeBytes > 0) await putLarge(cloud, "half.bin", halfBytes, HALF_SET);
    await putFile(cloud, "one.dat", randomBytes(1024), ONE_SET);
    for (const set of largeBytes > 0 ? [LARGE_SET, HALF_SET, ONE_SET] : [ONE_SET]) await takeSnapshot(cloud.store, set, { id: "snap-bench", taskId: "bench", seq: null }, { now: new Date() });
    // The set's folder on the source host: only named, the restore reads nothing of it.
    const sourceTree = join(dir, "source");
    mkdirSync(sourceTree);
    const config = agentConfig(cloud, cloud.sourceEndpoint, dir, sourceTree, SET);
    const times = { tidemark: [] as number[], rclone16: [] as number[], rclone64: [] as number[] };
    const peaks: number[] = [];
    const cpus: number[] = [];
    const source = `bench:${cloud.bucket}/${dataPrefix(SET)}`;
    const rcloneCopy = (to: string, transfers: number, endpoint: string) => rclone(["copy", source, to, "--transfers", String(transfers), "--checkers", String(transfers)], endpoint);
    const alone = async (set: string) => {
      const peak = (await tidemarkRestore(agentConfig(cloud, cloud.sourceEndpoint, dir, sourceTree, set), join(dir, set), set)).peak;
      await rm(join(dir, set), { recursive: true, force: true });
      return peak;
    };
    // The CLI's own peak first: it also fills Node's compile cache, so the timed runs do not strip the TypeScript
    // sources' types (a checkout's first run does; the installed package is compiled JavaScript).
    const cliPeak = await alone(ONE_SET);
    for (let run = 0; run < runs; run++) {
      const to = join(dir, `restored-${run}`);
      const restored = await tidemarkRestore(config, to);
      if (restored.files !== summary.files || restored.bytes !== summary.bytes) throw new Error(`the restore wrote ${restored.files} files (${restored.bytes} bytes), the snapshot holds ${summary.files} (${summary.bytes})`);
      times.tidemark.push(restored.ms);
      peaks.push(restored.peak);
      cpus.push(restored.cpu);
      await rm(to, { recursive: true, force: true });
      times.rclone16.push(await rcloneCopy(join(dir, `rclone16-${run}`), 16, cloud.sourceEndpoint));
      await rm(join(dir, `rclone16-${run}`), { recursive: true, force: true });
      times.rclone64.push(await rcloneCopy(join(dir, `rclone64-${run}`), 64, cloud.sourceEndpoint));
      await rm(join(dir, `rclone64-${run}`), { recursive: true, force: true });
    }
    // Memory against what is in flight: the large file alone against one of half its size.
    const largePeaks = largeBytes > 0 ? { large: await alone(LARGE_SET), half: await alone(HALF_SET) } : undefined;
    // Requests, in a run of their own through a counting proxy.
    const proxy = await countingProxy(cloud.sourceEndpoint);
    let counted: { tidemark: number; rclone16: number };
    try {
      const countConfig = join(dir, "count.config.json");
      writeFileSync(countConfig, readFileSync(config, "utf8").replaceAll(cloud.sourceEndpoint, proxy.endpoint));
      await tidemarkRestore(countConfig, join(dir, "counted"));
      const tidemark = proxy.counts.requests;
      proxy.reset();
      await rcloneCopy(join(dir, "rclone-counted"), 16, proxy.endpoint);
      counted = { tidemark, rclone16: proxy.counts.requests };
      // The restored big file, read back: the bytes are the snapshot's.
      if (largeBytes > 0) await checkHuge(join(dir, "counted", "huge.bin"), largeBytes);
    } finally {
      await proxy.close();
    }
    const t = median(times.tidemark);
    const r16 = median(times.rclone16);
    const r64 = median(times.rclone64);
    const total = summary.bytes;
    const rate = (ms: number) => `${(total / MiB / (ms / 1000)).toFixed(1)} MiB/s`;
    const seconds = (ms: number) => (ms / 1000).toFixed(2);
    const scenario = `restore of a snapshot: ${files} small files + 5 × 8 MiB + ${formatBytes(largeBytes)} (${formatBytes(total)}; ${describeModel(model)})`;
    return [
      {
        scenario,
        metric: "time to an exact tree (s)",
        tidemark: `${seconds(t)} (${rate(t)})`,
        peer: `rclone copy --transfers 16 ${seconds(r16)} (${rate(r16)}), --transfers 64 ${seconds(r64)}`,
        target: "≤ 1.0 × rclone 16",
        met: t <= r16,
      },
      { scenario, metric: "requests (a counting run of its own)", tidemark: String(counted.tidemark), peer: `rclone copy --transfers 16 ${counted.rclone16}`, target: "(measured)", met: undefined },
      { scenario, metric: "CPU time of the restore process (user + system, s)", tidemark: (median(cpus) / 1000).toFixed(2), peer: "-", target: "(measured)", met: undefined },
      {
        scenario,
        metric: "peak RSS of the restore",
        tidemark: formatBytes(Math.max(...peaks)),
        peer: "-",
        target: `≤ ${formatBytes(cliPeak)} (the CLI restoring one file) + ${formatBytes(IN_FLIGHT_BYTES)} in flight (${WRITE_CONCURRENCY} files × ${formatBytes(DIRECT_READ_BYTES)}, ${DEFAULT_PARTS_AHEAD} parts × ${formatBytes(DEFAULT_PART_BYTES)} ahead)`,
        met: Math.max(...peaks) <= cliPeak + IN_FLIGHT_BYTES,
      },
      ...(largePeaks !== undefined
        ? [
            {
              scenario,
              metric: `peak RSS restoring the ${formatBytes(largeBytes)} file alone`,
              tidemark: formatBytes(largePeaks.large),
              peer: `a ${formatBytes(halfBytes)} file alone: ${formatBytes(largePeaks.half)}`,
              target: `≤ the ${formatBytes(halfBytes)} file's + ${formatBytes((largeBytes - halfBytes) / 8)} (an eighth of the difference: memory does not grow with the file)`,
              met: largePeaks.large <= largePeaks.half + (largeBytes - halfBytes) / 8,
            },
          ]
        : []),
    ];
  } finally {
    await cloud.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The restored large file is as long as it was put and holds its per-block counters. */
async function checkHuge(path: string, bytes: number): Promise<void> {
  const handle = await open(path, "r");
  try {
    const st = await handle.stat();
    if (st.size !== bytes) throw new Error(`the restored huge.bin holds ${st.size} bytes, not ${bytes}`);
    const head = Buffer.alloc(8);
    await handle.read(head, 0, 8, Math.floor((bytes - 1) / (8 * MiB)) * 8 * MiB);
    if (head.readBigUInt64BE(0) !== BigInt(Math.floor((bytes - 1) / (8 * MiB)))) throw new Error("the restored huge.bin's last block is not the one put");
  } finally {
    await handle.close();
  }
}
