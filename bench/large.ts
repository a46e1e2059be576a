// One large file replicated from scratch (issue 17, "any file size"): a file
// of `gib` GiB in a tree of its own, `tidemark run` as a process of its own
// (it stages the file in parts), the emulator in another (it keeps the body
// in files, never whole in memory), the applier in this one (it checks the
// staged SHA-256 streamed and copies the object server-side). Timed from the
// agent's start to the target's object holding the file's SHA-256; the bytes
// are then read back and hashed. Peak RSS of each process is its VmHWM.

import { createHash, randomFillSync } from "node:crypto";
import { closeSync, createReadStream, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatBytes } from "../agent/format.ts";
import { dataKey, META } from "../contract/layout.ts";
import { agentConfig, agentProcess } from "./scenarios.ts";
import { startBenchCloud, until, type Result } from "./support.ts";

const MiB = 1024 * 1024;
const BLOCK = 64 * MiB;

/** A file of `bytes` that does not compress: one random block, each copy with its own first 8 bytes. */
function writeIncompressible(path: string, bytes: number): void {
  const block = randomFillSync(Buffer.allocUnsafe(BLOCK));
  const fd = openSync(path, "w");
  try {
    for (let at = 0, n = 0; at < bytes; at += BLOCK, n++) {
      block.writeBigUInt64BE(BigInt(n), 0);
      const length = Math.min(BLOCK, bytes - at);
      for (let written = 0; written < length; ) written += writeSync(fd, block, written, length - written, at + written);
    }
  } finally {
    closeSync(fd);
  }
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) if (Buffer.isBuffer(chunk)) hash.update(chunk);
  return hash.digest("hex");
}

/** Peak resident memory (VmHWM) of a running process, in bytes. */
function peakRss(pid: number): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!match) throw new Error(`no VmHWM for process ${pid}`);
  return Number(match[1]) * 1024;
}

export async function largeFile(gib: number): Promise<Result[]> {
  const dir = await mkdtemp(join(tmpdir(), "tidemark-bench-"));
  const tree = join(dir, "tree");
  const file = join(tree, "big.bin");
  const bytes = Math.round(gib * 1024 * MiB);
  mkdirSync(tree);
  writeIncompressible(file, bytes);
  const sha256 = await sha256OfFile(file);
  // History keeps replaced versions: not what is measured here.
  const cloud = await startBenchCloud({ separateEmulator: true, history: { days: 0 } });
  try {
    const started = Date.now();
    const agent = await agentProcess(agentConfig(cloud, cloud.sourceEndpoint, dir, tree, "large"));
    try {
      await until(async () => (await cloud.store.head(dataKey("large", "big.bin")))?.meta[META.sha256] === sha256, 3_600_000, "big.bin to reach the target");
      const seconds = (Date.now() - started) / 1000;
      const agentPeak = peakRss(agent.pid ?? 0);
      const emulatorPeak = cloud.emulatorPid !== undefined ? peakRss(cloud.emulatorPid) : Number.NaN;
      const applierPeak = process.resourceUsage().maxRSS * 1024;
      // The bytes themselves, read back streamed.
      const stored = await cloud.store.hash(dataKey("large", "big.bin"));
      if (stored?.sha256 !== sha256) throw new Error("the target's big.bin is not the source's");
      const scenario = `one ${gib} GiB file, initial copy (staged in parts, copied server-side)`;
      return [
        { scenario, metric: "agent start to the exact file on the target (s)", tidemark: seconds.toFixed(1), peer: "-", target: "(measured)", met: undefined },
        {
          scenario,
          metric: "peak RSS: emulator / agent / applier (bench process)",
          tidemark: `${formatBytes(emulatorPeak)} / ${formatBytes(agentPeak)} / ${formatBytes(applierPeak)}`,
          peer: "-",
          target: `each < ${formatBytes(bytes)}`,
          met: Math.max(emulatorPeak, agentPeak, applierPeak) < bytes,
        },
      ];
    } finally {
      agent.kill("SIGINT");
    }
  } finally {
    await cloud.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
