// `npm run bench`: runs the scenarios, prints a table, and writes
// BENCHMARKS.md with the machine, the exact command and the medians.
//
//   npm run bench                       every scenario, 3 runs each, full size
//   npm run bench -- --only delta       one scenario (initial, delta, steady, marker, memory, applier, cost, db, append, large)
//   npm run bench -- --only db --db-gib 4   the page-write scenario on a 4 GiB file (default 1 GiB, --db-seconds 30)
//   npm run bench -- --only large --large-gib 4
//                                       one large file's initial copy: time, and the peak RSS of the emulator,
//                                       agent and applier (bench/large.ts; default 4 GiB)
//   npm run bench -- --only restore --restore-large-gib 1
//                                       a snapshot's restore against rclone copy (bench/restore.ts; default 0.25 GiB);
//                                       its memory rows: the peak against the CLI's own plus what is in flight, and
//                                       the large file restored alone against one of half its size
//   npm run bench -- --scale 0.1        smaller trees, for a quick look (not for BENCHMARKS.md)
//   npm run bench -- --rewrite          run nothing; write BENCHMARKS.md from the kept results and notes
//   npm run bench -- --only steady --unversioned-bucket
//                                       against an unversioned bucket (the default is versioned, as the stack's and
//                                       the local cloud's are); kept beside the other rows
//   npm run bench -- --only initial --wan-rtt-ms 40 --s3-latency-ms 20 --sqs-latency-ms 10 --lambda-cpu 0.6
//                                       under the AWS-latency model (bench/latency.ts): initial, steady and
//                                       applier; kept beside the loopback rows

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { table } from "../agent/format.ts";
import { costModel } from "./cost.ts";
import { APPLIER_SDK_ONLY_ENV, describeModel, hasLatency, UNVERSIONED_BUCKET_ENV, type LatencyModel } from "./latency.ts";
import { databasePages, logAppends } from "./db.ts";
import { largeFile } from "./large.ts";
import { restoreSnapshot } from "./restore.ts";
import { agentMemory, applierThroughput, deltaChange, initialMirror, markerLatency, steadyLoad } from "./scenarios.ts";
import { machine, type Result } from "./support.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    scale: { type: "string", default: "1" },
    seconds: { type: "string", default: "20" },
    "db-gib": { type: "string", default: "1" },
    "db-seconds": { type: "string", default: "30" },
    "large-gib": { type: "string", default: "4" },
    "restore-large-gib": { type: "string", default: "0.25" },
    "append-seconds": { type: "string", default: "60" },
    only: { type: "string", multiple: true },
    "no-write": { type: "boolean" },
    "wan-rtt-ms": { type: "string", default: "0" },
    "s3-latency-ms": { type: "string", default: "0" },
    "sqs-latency-ms": { type: "string", default: "0" },
    /** CPUs the applier's process may use (Lambda gives ~0.58 vCPU at 1,024 MB); needs root. */
    "lambda-cpu": { type: "string", default: "0" },
    /** The applier's S3 requests all through the SDK, without its direct path (to weigh the direct path). */
    "applier-sdk-only": { type: "boolean" },
    /** An unversioned target bucket, as an S3-compatible store without versioning (the default is versioned, as the stack's). */
    "unversioned-bucket": { type: "boolean" },
    /** The default since the bench's bucket is versioned: accepted so earlier commands still run as they did. */
    "versioned-bucket": { type: "boolean" },
    /** Run nothing: write BENCHMARKS.md again from bench/results.json and bench/notes.md. */
    rewrite: { type: "boolean" },
  },
});
const runs = Number(values.runs);
const scale = Number(values.scale);
const seconds = Number(values.seconds);
const only = new Set(values.only ?? []);
const number = (name: string, text: string) => {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} takes a number ≥ 0, not "${text}"`);
  return value;
};
const model: LatencyModel = {
  wanRttMs: number("wan-rtt-ms", values["wan-rtt-ms"]),
  s3LatencyMs: number("s3-latency-ms", values["s3-latency-ms"]),
  sqsLatencyMs: number("sqs-latency-ms", values["sqs-latency-ms"]),
  lambdaCpu: number("lambda-cpu", values["lambda-cpu"]),
};
const modelled = hasLatency(model) || model.lambdaCpu > 0;
// Read by every emulator the bench starts, in this process and in the ones it spawns.
if (values["versioned-bucket"] === true && values["unversioned-bucket"] === true) throw new Error("--versioned-bucket and --unversioned-bucket exclude each other");
if (values["unversioned-bucket"] === true) process.env[UNVERSIONED_BUCKET_ENV] = "1";
if (values["applier-sdk-only"] === true) process.env[APPLIER_SDK_ONLY_ENV] = "1";
/** Scenarios the latency model applies to; under a model, the others do not run. */
const UNDER_MODEL = new Set(["initial", "steady", "applier", "restore"]);
const wanted = (name: string) => values.rewrite !== true && (only.size === 0 || only.has(name)) && (!modelled || UNDER_MODEL.has(name));

const scenarios: [string, () => Promise<Result[]>][] = [
  ["initial", () => initialMirror(runs, scale, model)],
  ["delta", () => deltaChange(runs)],
  ["steady", () => steadyLoad(scale, seconds, model)],
  ["marker", () => markerLatency(runs, scale)],
  ["memory", () => agentMemory(scale)],
  ["applier", () => applierThroughput(runs, model)],
  ["cost", () => costModel(scale)],
  ["db", () => databasePages(number("db-gib", values["db-gib"]), number("db-seconds", values["db-seconds"]))],
  ["append", () => logAppends(number("append-seconds", values["append-seconds"]))],
  ["large", () => largeFile(number("large-gib", values["large-gib"]))],
  ["restore", () => restoreSnapshot(runs, scale, Math.round(number("restore-large-gib", values["restore-large-gib"]) * 1024 ** 3), model)],
];
/** Where a scenario's rows are kept: loopback rows and each model's rows side by side. */
const keyOf = (name: string) => {
  // A page-write run on another file size than the default keeps its rows beside the 1 GiB ones.
  const size = name === "db" && number("db-gib", values["db-gib"]) !== 1 ? [`${values["db-gib"]} GiB file`] : [];
  const where = [...size, ...(modelled ? [describeModel(model)] : []), ...(values["unversioned-bucket"] === true ? ["unversioned bucket"] : []), ...(values["applier-sdk-only"] === true ? ["applier through the SDK only"] : [])];
  return where.length > 0 ? `${name} @ ${where.join(", ")}` : name;
};

/** bench/results.json: each scenario's latest rows, with how and where they were measured. */
const KeptResults = z.record(
  z.string(),
  z.object({
    rows: z.array(
      z.object({
        scenario: z.string(),
        metric: z.string(),
        tidemark: z.string(),
        peer: z.string(),
        target: z.string(),
        // JSON has no undefined: a measurement without a target is stored without "met" (or as null).
        met: z
          .boolean()
          .nullish()
          .transform((met) => met ?? undefined),
      }),
    ),
    command: z.string(),
    date: z.string(),
    machine: z.string(),
  }),
);

const args = process.argv.slice(2);
const command = args.length > 0 ? `npm run bench -- ${args.join(" ")}` : "npm run bench";
const measured: Record<string, { rows: Result[]; command: string; date: string; machine: string }> = {};
for (const [name, run] of scenarios) {
  if (!wanted(name)) continue;
  process.stderr.write(`running ${name}...\n`);
  measured[keyOf(name)] = { rows: await run(), command, date: new Date().toISOString().slice(0, 10), machine: machine() };
}

const verdict = (met: boolean | undefined) => (met === undefined ? "-" : met ? "met" : "MISSED");
const headers = ["scenario", "metric", "tidemark", "peer (same run)", "target", ""];
const cells = (r: Result) => [r.scenario, r.metric, r.tidemark, r.peer, r.target, verdict(r.met)];
process.stdout.write(`${table(headers, Object.values(measured).flatMap((m) => m.rows.map(cells)))}\n`);

if (!values["no-write"]) {
  // Every scenario's latest measurement, with the command that produced it: a run of one scenario keeps the others.
  const store = new URL("./results.json", import.meta.url);
  const all = { ...(existsSync(store) ? KeptResults.parse(JSON.parse(readFileSync(store, "utf8"))) : {}), ...measured };
  writeFileSync(store, `${JSON.stringify(all, null, 2)}\n`);
  // Each scenario's loopback rows, then its rows under each latency model measured.
  const ordered = scenarios
    .flatMap(([name]) => Object.keys(all).filter((key) => key === name || key.startsWith(`${name} @ `)).sort())
    .map((key) => [key, all[key]] as const);
  const markdown = [
    "# Benchmarks",
    "",
    "Against the emulator (fauxqs) on 127.0.0.1, its bucket versioned as the stack's is unless a row says `unversioned bucket`; rclone from Debian against the same emulator, through the same path (nothing in one tool's path that the other does not pay).",
    "Rows marked with a model (`WAN RTT …`) ran under the AWS-latency model of bench/latency.ts: every request of the source host (tidemark's and rclone's) waits the WAN round trip plus the service's latency, the applier's requests the service's latency, and the applier's process is held to the stated vCPU share; bandwidth is not modelled.",
    "Medians over the runs of each scenario. Written by `npm run bench` (from bench/results.json and bench/notes.md); do not edit by hand.",
    "",
    `| ${[...headers, "measured"].join(" | ")} |`,
    `| ${[...headers, "measured"].map(() => "---").join(" | ")} |`,
    ...ordered.flatMap(([, m]) => (m ? m.rows.map((r) => `| ${[...cells(r), `${m.date}, \`${m.command}\``].join(" | ")} |`) : [])),
    "",
    `Machine: ${[...new Set(ordered.map(([, m]) => m?.machine))].join("; ")}.`,
    "",
    readFileSync(new URL("./notes.md", import.meta.url), "utf8").trim(),
    "",
  ].join("\n");
  writeFileSync(new URL("../BENCHMARKS.md", import.meta.url), markdown);
  process.stderr.write("wrote BENCHMARKS.md\n");
}
