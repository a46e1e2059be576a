// The database scenarios of issue 17: random 4 KiB page writes (fsync'd, at
// 200/s) into a large file, and a log appended every 10 ms. `tidemark run` is
// a process of its own (its CPU is read from /proc), the writer another; the
// counting proxy measures every byte the agent sends (SQS bodies and staged
// objects). rsync's bytes are for the same change set between two local
// copies (`rsync --no-whole-file --stats`), sent once at the end.

import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, createReadStream, ftruncateSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { formatBytes } from "../agent/format.ts";
import { dataKey, META } from "../contract/layout.ts";
import { releaseFromApplierCpu } from "./latency.ts";
import { agentConfig, agentProcess } from "./scenarios.ts";
import { countingProxy, startBenchCloud, until, type BenchCloud, type Result } from "./support.ts";
import { describeBreakdown, isSendMessage, wireBreakdown, type WireBreakdown } from "./wire-breakdown.ts";

const MiB = 1024 * 1024;
/** Page writes a second, as the issue states them. */
const PAGE_RATE = 200;
/** Log lines a second: one every 10 ms. */
const APPEND_RATE = 100;

interface Written {
  readonly writes: number;
  readonly bytes: number;
  readonly first: number;
  readonly last: number;
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) if (Buffer.isBuffer(chunk)) hash.update(chunk);
  return hash.digest("hex");
}

/** CPU seconds (user + system) a process used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

function runWriter(mode: "pages" | "append", file: string, rate: number, seconds: number, out: string): Promise<Written> {
  return new Promise((resolve, reject) => {
    const writer = spawn(process.execPath, [fileURLToPath(new URL("./page-writer.ts", import.meta.url)), mode, file, String(rate), String(seconds), out], { stdio: "inherit" });
    releaseFromApplierCpu(writer.pid);
    writer.once("exit", (code) => (code === 0 ? resolve(JSON.parse(readFileSync(out, "utf8")) as Written) : reject(new Error(`the writer exited with ${code}`))));
  });
}

/** Waits until the target's object of path has the sha256 (as the applier wrote it after checking the rebuilt file). */
async function holds(cloud: BenchCloud, set: string, path: string, sha256: string, timeoutMs: number): Promise<void> {
  await until(async () => (await cloud.store.head(dataKey(set, path)))?.meta[META.sha256] === sha256, timeoutMs, `${path} to reach the target`);
}

/** rsync's bytes (sent + received) to bring `stale` to `fresh`, delta transfer forced as between hosts. */
function rsyncBytes(fresh: string, stale: string): { total: number; literal: number } {
  const stats = execFileSync("rsync", ["--stats", "--no-whole-file", "--inplace", fresh, stale]).toString();
  const number = (label: string) => Number((new RegExp(`${label}: ([\\d,]+)`).exec(stats)?.[1] ?? "NaN").replaceAll(",", ""));
  return { total: number("Total bytes sent") + number("Total bytes received"), literal: number("Literal data") };
}

interface Measured {
  readonly written: Written;
  readonly wire: number;
  readonly lagMs: number;
  readonly cpu: number;
  readonly initialMs: number;
  /** Records the applier applied from the first write on: the versions of the file it rebuilt (and its folder's). */
  readonly applied: number;
  /** When each of those records was applied, and the agent's last SendMessage went: ms after the last write (negative: before it). */
  readonly appliedAfterLastMs: readonly number[];
  readonly lastSendAfterLastMs: number;
  readonly rsync: { total: number; literal: number };
  /** The messages sent from the first write on, and the records in them. */
  readonly messages: WireBreakdown;
}

/** Replicates `file` (made by `make`), then runs the writer against it and measures (see the top of this file). */
async function measure(set: string, name: string, make: (path: string) => void, mode: "pages" | "append", rate: number, seconds: number): Promise<Measured> {
  const dir = await mkdtemp(join(tmpdir(), "tidemark-bench-"));
  const tree = join(dir, "tree");
  mkdirSync(tree);
  const file = join(tree, name);
  make(file);
  // History keeps every version of a file whole: at one version every few seconds it is not what is measured here.
  const cloud = await startBenchCloud({ history: { days: 0 } });
  // Where the lag goes: when the agent's messages went and the applier's records landed.
  const sends: number[] = [];
  const bodies: Buffer[] = [];
  const proxy = await countingProxy(
    cloud.endpoint,
    (req, _bytes, body) => {
      if (!isSendMessage(req)) return;
      sends.push(Date.now());
      if (body) bodies.push(body);
    },
    isSendMessage,
  );
  try {
    const started = Date.now();
    const agent = await agentProcess(agentConfig(cloud, proxy.endpoint, dir, tree, set));
    try {
      await holds(cloud, set, name, await sha256OfFile(file), 1_800_000);
      const initialMs = Date.now() - started;
      const stale = join(dir, "stale");
      execFileSync("cp", ["--sparse=always", file, stale]);
      proxy.reset();
      const cpuBefore = cpuSeconds(agent.pid ?? 0);
      const appliedBefore = cloud.appliedRecords(set);
      const appliedTimes: number[] = [];
      let count = appliedBefore;
      const sampler = setInterval(() => {
        for (const now = cloud.appliedRecords(set); count < now; count++) appliedTimes.push(Date.now());
      }, 50);
      sends.length = 0;
      bodies.length = 0;
      const written = await runWriter(mode, file, rate, seconds, join(dir, "written.json"));
      await holds(cloud, set, name, await sha256OfFile(file), 600_000).finally(() => clearInterval(sampler));
      const lagMs = (cloud.appliedAt.get(`${set}:${name}`) ?? Number.NaN) - written.last;
      const applied = cloud.appliedRecords(set) - appliedBefore;
      const wire = proxy.counts.bytes;
      const cpu = cpuSeconds(agent.pid ?? 0) - cpuBefore;
      // The bytes themselves, not only the metadata the applier wrote.
      const stored = await cloud.store.hash(dataKey(set, name));
      if (stored?.sha256 !== (await sha256OfFile(file))) throw new Error(`the target's ${name} is not the source's`);
      const appliedAfterLastMs = appliedTimes.map((at) => at - written.last);
      const lastSendAfterLastMs = (sends.at(-1) ?? Number.NaN) - written.last;
      return { written, wire, lagMs, cpu, initialMs, applied, appliedAfterLastMs, lastSendAfterLastMs, rsync: rsyncBytes(file, stale), messages: wireBreakdown(bodies) };
    } finally {
      agent.kill("SIGINT");
    }
  } finally {
    await proxy.close();
    await cloud.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A sparse database file: `gib` GiB, 64 MiB of data at its start. */
function sparseDatabase(gib: number): (path: string) => void {
  return (path) => {
    const fd = openSync(path, "w");
    try {
      ftruncateSync(fd, gib * 1024 * MiB);
      for (let at = 0; at < 64 * MiB; at += 8 * MiB) writeSync(fd, randomBytes(8 * MiB), 0, 8 * MiB, at);
    } finally {
      closeSync(fd);
    }
  };
}

export async function databasePages(gib: number, seconds: number): Promise<Result[]> {
  const m = await measure("db", "app.db", sparseDatabase(gib), "pages", PAGE_RATE, seconds);
  const scenario = `random 4 KiB page writes, ${PAGE_RATE}/s fsync'd for ${seconds} s, into a ${gib} GiB file`;
  const ratio = m.wire / m.written.bytes;
  const lag = m.lagMs / 1000;
  // The writer keeps the rate only as far as its fsyncs allow: CPU is per second it actually wrote.
  const writing = (m.written.last - m.written.first) / 1000;
  return [
    {
      scenario,
      metric: "bytes on the wire / bytes written",
      tidemark: `${formatBytes(m.wire)} / ${formatBytes(m.written.bytes)} = ${ratio.toFixed(2)}× (${m.written.writes} writes in ${writing.toFixed(1)} s)`,
      peer: `rsync --no-whole-file, the same change set at once: ${formatBytes(m.rsync.total)} (${formatBytes(m.rsync.literal)} literal)`,
      target: "≤ 4×",
      met: ratio <= 4,
    },
    { scenario, metric: "last write to the exact file on the target (s)", tidemark: `${lag.toFixed(1)} (${m.applied} records applied meanwhile, at ${m.appliedAfterLastMs.map((ms) => (ms / 1000).toFixed(1)).join(", ")} s from the last write; the last message sent at ${(m.lastSendAfterLastMs / 1000).toFixed(1)} s)`, peer: "-", target: "≤ 5", met: lag <= 5 },
    { scenario, metric: "agent CPU per second of writing", tidemark: `${(m.cpu / writing).toFixed(2)} s/s (${m.cpu.toFixed(1)} s over ${writing.toFixed(1)} s)`, peer: "-", target: "(stated)", met: undefined },
    { scenario, metric: `initial copy of the ${gib} GiB file (s)`, tidemark: (m.initialMs / 1000).toFixed(1), peer: "-", target: "(measured)", met: undefined },
  ];
}

export async function logAppends(seconds: number): Promise<Result[]> {
  const m = await measure("log", "app.log", (path) => writeFileSync(path, ""), "append", APPEND_RATE, seconds);
  const ratio = m.wire / m.written.bytes;
  const scenario = `a log appended every 10 ms for ${seconds} s, each line fsync'd`;
  return [
    {
      scenario,
      metric: "bytes on the wire / bytes appended",
      tidemark: `${formatBytes(m.wire)} / ${formatBytes(m.written.bytes)} = ${ratio.toFixed(2)}× (target exact ${(m.lagMs / 1000).toFixed(1)} s after the last line)`,
      peer: `rsync --no-whole-file, all appends at once: ${formatBytes(m.rsync.total)}`,
      target: "≤ 2×",
      met: ratio <= 2,
    },
    { scenario, metric: "messages and records behind those bytes", tidemark: describeBreakdown(m.messages), peer: "-", target: "(stated)", met: undefined },
  ];
}
