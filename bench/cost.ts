// The cost model's inputs, counted: every request the source host and the
// target side send (SQS by action, S3 by kind, EBS direct API calls) and the
// applier's invocations and their duration, for three workloads: small-file
// changes streaming in, small-file changes trickling in one at a time, and a
// volume's changed blocks cut into EBS snapshots. Then priced with the list
// prices below, per million changes and per GiB changed.

import { randomBytes } from "node:crypto";
import { mkdirSync, openSync, closeSync, writeSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { loadConfig } from "../agent/config.ts";
import { silentLogger } from "../agent/log.ts";
import { startAgent, type RunningAgent } from "../agent/runtime.ts";
import { BLOCK_SIZE } from "../contract/wire.ts";
import { startEmulator } from "../lambdas/local/emulator.ts";
import { startLocalTarget } from "../lambdas/local/target.ts";
import { benchBucketVersioned } from "./latency.ts";
import { LOCAL_EVENTS_FILE, localTaskSettings } from "../lambdas/local/tasks.ts";
import { countingProxy, REGION, until, type Result } from "./support.ts";

/** us-east-1 list prices used by the model (USD). */
export const PRICES = {
  /** SQS FIFO, per request; each 64 KiB of payload counts as one. */
  sqsRequest: 0.5 / 1e6,
  s3Put: 0.005 / 1000,
  s3Get: 0.0004 / 1000,
  lambdaGbSecond: 0.0000133334,
  lambdaInvocation: 0.2 / 1e6,
  /** EBS direct APIs: PutSnapshotBlock per 1,000 blocks; the other calls (Start, Complete) at GetSnapshotBlock's price, an upper bound. */
  ebsPutBlock: 0.006 / 1000,
  ebsOther: 0.003 / 1000,
} as const;

const APPLIER_MEMORY_GB = 1;

/** Requests by kind: "SQS SendMessage", "S3 PUT", "S3 GET", "S3 LIST", "S3 COPY", ... */
type Tally = Map<string, number>;

/** A proxy in front of the emulator that counts what goes through it, by kind, and SQS's 64 KiB payload chunks. */
async function tallyingProxy(target: string): Promise<{ endpoint: string; tally: Tally; close(): Promise<void> }> {
  const tally: Tally = new Map();
  const add = (kind: string, n = 1) => tally.set(kind, (tally.get(kind) ?? 0) + n);
  const proxy = await countingProxy(target, (req, bytes) => {
    const sqsAction = req.headers["x-amz-target"];
    if (typeof sqsAction === "string") {
      add(`SQS ${sqsAction.replace(/^AmazonSQS\./, "")}`);
      // Billed per 64 KiB chunk of the request.
      add("SQS billed requests", Math.max(1, Math.ceil(bytes / 65_536)));
      return;
    }
    const url = new URL(req.url ?? "/", "http://x");
    const kind = req.headers["x-amz-copy-source"] ? "COPY" : req.method === "GET" && url.searchParams.has("list-type") ? "LIST" : (req.method ?? "?");
    add(`S3 ${kind}`);
  });
  return { endpoint: proxy.endpoint, tally, close: () => proxy.close() };
}

interface Measured {
  readonly source: Tally;
  readonly target: Tally;
  readonly ebs: Tally;
  readonly invocations: number;
  readonly invocationMs: number;
}

/** A target whose every request is counted, an agent on `sets` whose every request is counted, and `work` run against them. */
async function counted(
  sets: unknown[],
  work: (agent: RunningAgent, dir: string, caughtUp: (set: string) => Promise<void>, reset: () => void) => Promise<void>,
  setup: (dir: string) => void,
): Promise<Measured> {
  const dir = await mkdtemp(join(tmpdir(), "tidemark-cost-"));
  const emulator = await startEmulator({ port: 0, versioned: benchBucketVersioned() });
  const sourceProxy = await tallyingProxy(emulator.endpoint);
  const targetProxy = await tallyingProxy(emulator.endpoint);
  const applied = new Map<string, number>();
  let invocations = 0;
  let invocationMs = 0;
  let inFlight = 0;
  const timed =
    (handler: (event: SQSEvent) => Promise<SQSBatchResponse>) =>
    async (event: SQSEvent): Promise<SQSBatchResponse> => {
      const started = performance.now();
      inFlight += 1;
      try {
        return await handler(event);
      } finally {
        inFlight -= 1;
        invocations += 1;
        invocationMs += performance.now() - started;
      }
    };
  // The emulator is started here, not by the target: the agent's requests go to it through a proxy of their own.
  const target = await startLocalTarget({
    emulator: { endpoint: emulator.endpoint },
    clientEndpoint: targetProxy.endpoint,
    visibilityTimeoutSeconds: 30,
    ebs: {},
    tasks: ({ ebs }) => localTaskSettings(join(dir, LOCAL_EVENTS_FILE), ebs),
    observer: { applied: (set, record) => applied.set(set, Math.max(applied.get(set) ?? 0, record.seq)) },
    // As deployed: TIDEMARK_POINT_IN_TIME_DAYS (7 days unless set; 0 prices a target without point-in-time history).
    history: "environment",
    wrapHandler: timed,
    poller: { waitTimeSeconds: 1 },
  });
  const { ebs } = target;
  let agent: RunningAgent | undefined;
  try {
    setup(dir);
    const config = join(dir, "tidemark.config.json");
    writeFileSync(
      config,
      JSON.stringify({
        region: REGION,
        endpoint: sourceProxy.endpoint,
        queueUrl: target.queueUrl.replace(emulator.endpoint, sourceProxy.endpoint),
        bucket: target.bucket,
        stateDir: join(dir, "state"),
        sets,
        ebsEndpoint: ebs.endpoint,
      }),
    );
    agent = await startAgent(loadConfig(config), silentLogger);
    const running = agent;
    const caughtUp = async (set: string) => {
      // Everything the source holds is journaled (the watcher may still be gathering hints), then applied, and the
      // invocation that applied it has ended (its last status write counts).
      await running.agent.scan(set);
      await until(
        () => {
          const counters = running.agent.journal.sets.counters(set);
          return counters.backlogRecords === 0 && (applied.get(set) ?? 0) >= counters.nextSeq - 1 && inFlight === 0;
        },
        600_000,
        `set ${set} to reach the target`,
      );
    };
    for (const set of sets as { name: string }[]) await caughtUp(set.name);
    // Count only the work, not the initial mirror.
    const reset = () => {
      sourceProxy.tally.clear();
      targetProxy.tally.clear();
      ebs.calls.clear();
      invocations = 0;
      invocationMs = 0;
    };
    reset();
    await work(running, dir, caughtUp, reset);
    return { source: new Map(sourceProxy.tally), target: new Map(targetProxy.tally), ebs: new Map(ebs.calls), invocations, invocationMs };
  } finally {
    await agent?.stop();
    await target.stop();
    await sourceProxy.close();
    await targetProxy.close();
    await emulator.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const sum = (tally: Tally, prefix: string) => [...tally.entries()].filter(([k]) => k.startsWith(prefix)).reduce((n, [, v]) => n + v, 0);

/** Dollars for the measured requests and invocations, scaled by `factor`, with the lines that make them up. */
function price(m: Measured, factor: number): { total: number; lines: string[] } {
  const both = (kind: string) => (m.source.get(kind) ?? 0) + (m.target.get(kind) ?? 0);
  const sqs = both("SQS billed requests") * factor;
  // DELETE is free; LIST and multipart POSTs are billed as PUTs, HEAD as GET.
  const puts = (both("S3 PUT") + both("S3 COPY") + both("S3 POST") + both("S3 LIST")) * factor;
  const gets = (both("S3 GET") + both("S3 HEAD")) * factor;
  const invocations = m.invocations * factor;
  const gbSeconds = (m.invocationMs / 1000) * APPLIER_MEMORY_GB * factor;
  const ebsPuts = (m.ebs.get("PutSnapshotBlock") ?? 0) * factor;
  const ebsOther = (sum(m.ebs, "") - (m.ebs.get("PutSnapshotBlock") ?? 0)) * factor;
  const parts: [string, number, number][] = [
    ["SQS requests", sqs, sqs * PRICES.sqsRequest],
    ["S3 PUT/COPY/LIST", puts, puts * PRICES.s3Put],
    ["S3 GET/HEAD", gets, gets * PRICES.s3Get],
    ["Lambda invocations", invocations, invocations * PRICES.lambdaInvocation],
    ["Lambda GB-s", gbSeconds, gbSeconds * PRICES.lambdaGbSecond],
    ["EBS PutSnapshotBlock", ebsPuts, ebsPuts * PRICES.ebsPutBlock],
    ["EBS other calls", ebsOther, ebsOther * PRICES.ebsOther],
  ];
  const lines = parts.filter(([, n]) => n > 0).map(([what, n, usd]) => `${what} ${Math.round(n).toLocaleString("en-US")} ($${usd.toFixed(2)})`);
  return { total: parts.reduce((t, [, , usd]) => t + usd, 0), lines };
}

function describeCounts(m: Measured): string {
  const show = (t: Tally) => [...t.entries()].filter(([k]) => k !== "SQS billed requests").sort().map(([k, v]) => `${k} ${v}`).join(", ");
  return `source: ${show(m.source)}; target: ${show(m.target)}${m.ebs.size > 0 ? `; EBS: ${show(m.ebs)}` : ""}; ${m.invocations} invocations, ${Math.round(m.invocationMs)} ms`;
}

/** Small files written `perSecond` at a time for `count` files: new ones, or with `existing`, files of the mirror overwritten (round robin). */
async function smallChanges(count: number, perSecond: number, existing = 0): Promise<Measured> {
  const name = (i: number) => `f${existing > 0 ? i % existing : i}.txt`;
  return counted(
    [{ name: "files", path: "tree" }],
    async (agent, dir, caughtUp) => {
      const started = performance.now();
      for (let i = 0; i < count; i++) {
        writeFileSync(join(dir, "tree", `d${i % 50}`, name(i)), randomBytes(300).toString("hex"));
        const due = started + ((i + 1) * 1000) / perSecond;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
      await caughtUp("files");
    },
    (dir) => {
      for (let d = 0; d < 50; d++) mkdirSync(join(dir, "tree", `d${d}`), { recursive: true });
      for (let i = 0; i < existing; i++) writeFileSync(join(dir, "tree", `d${i % 50}`, name(i)), `before ${i}`);
    },
  );
}

/** A volume whose `changedBlocks` random blocks are rewritten, then cut into an EBS snapshot (after a first, full one). */
async function volumeChanges(blocks: number, changedBlocks: number): Promise<Measured> {
  let taskCount = 0;
  const ebsSnapshot = async (agent: RunningAgent) => {
    taskCount += 1;
    const queued = await agent.agent.insertMarker("vm", { fields: { action: "ebs-snapshot", timeoutSeconds: 300, label: `cost-${taskCount}` } });
    return queued.id;
  };
  return counted(
    [{ name: "vm", type: "volume", path: "vm.img", scanSeconds: 3600 }],
    async (agent, dir, caughtUp, reset) => {
      // The first EBS snapshot holds every block; the ones after it only what changed: those are counted.
      await ebsSnapshot(agent);
      await caughtUp("vm");
      reset();
      const fd = openSync(join(dir, "vm.img"), "r+");
      for (let i = 0; i < changedBlocks; i++) writeSync(fd, randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, ((i * 7919) % blocks) * BLOCK_SIZE);
      closeSync(fd);
      await ebsSnapshot(agent);
      await caughtUp("vm");
    },
    (dir) => {
      const fd = openSync(join(dir, "vm.img"), "w");
      for (let i = 0; i < blocks; i++) writeSync(fd, randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, i * BLOCK_SIZE);
      closeSync(fd);
    },
  );
}

export async function costModel(scale: number): Promise<Result[]> {
  const count = Math.max(200, Math.round(5000 * scale));
  const busy = await smallChanges(count, 1000);
  const trickle = await smallChanges(Math.max(50, Math.round(count / 20)), 5);
  // Point-in-time history keeps what each overwrite replaces: on a versioned bucket the noncurrent version (no request),
  // on an unversioned one (--unversioned-bucket) a copy to preserved/.
  const overwrites = await smallChanges(count, 1000, count);
  const blocks = 512;
  const changed = Math.max(32, Math.round(256 * scale));
  const volume = await volumeChanges(blocks, changed);
  const perMillion = (m: Measured, n: number) => price(m, 1e6 / n);
  const perGiB = (m: Measured) => price(m, 1024 ** 3 / (changed * BLOCK_SIZE));
  const row = (scenario: string, metric: string, priced: { total: number; lines: string[] }, m: Measured): Result => ({
    scenario,
    metric,
    tidemark: `$${priced.total.toFixed(2)}: ${priced.lines.join(", ")}`,
    peer: describeCounts(m),
    target: "(measured)",
    met: undefined,
  });
  return [
    row(`cost, ${count} small-file changes at 1,000/s`, "per million changes", perMillion(busy, count), busy),
    row(`cost, ${Math.max(50, Math.round(count / 20))} small-file changes at 5/s`, "per million changes", perMillion(trickle, Math.max(50, Math.round(count / 20))), trickle),
    row(`cost, ${count} small files overwritten at 1,000/s`, "per million changes", perMillion(overwrites, count), overwrites),
    row(`cost, ${changed} changed 512 KiB blocks of a volume + an ebs-snapshot marker`, "per GiB changed", perGiB(volume), volume),
  ];
}
