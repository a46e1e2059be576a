// `npm run bench`: runs the scenarios, prints a table, and writes
// BENCHMARKS.md with the machine, the exact command and the medians.
//
//   npm run bench                       every scenario, 3 runs each, full size
//   npm run bench -- --only delta       one scenario (initial, delta, steady, marker, applier)
//   npm run bench -- --scale 0.1        smaller trees, for a quick look (not for BENCHMARKS.md)

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { table } from "../agent/format.ts";
import { applierThroughput, deltaChange, initialMirror, markerLatency, steadyLoad } from "./scenarios.ts";
import { machine, type Result } from "./support.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    scale: { type: "string", default: "1" },
    seconds: { type: "string", default: "20" },
    only: { type: "string", multiple: true },
    "no-write": { type: "boolean" },
  },
});
const runs = Number(values.runs);
const scale = Number(values.scale);
const seconds = Number(values.seconds);
const only = new Set(values.only ?? []);
const wanted = (name: string) => only.size === 0 || only.has(name);

const scenarios: [string, () => Promise<Result[]>][] = [
  ["initial", () => initialMirror(runs, scale)],
  ["delta", () => deltaChange(runs)],
  ["steady", () => steadyLoad(scale, seconds)],
  ["marker", () => markerLatency(runs, scale)],
  ["applier", () => applierThroughput(runs)],
];

const results: Result[] = [];
for (const [name, run] of scenarios) {
  if (!wanted(name)) continue;
  process.stderr.write(`running ${name}...\n`);
  results.push(...(await run()));
}

const verdict = (met: boolean | undefined) => (met === undefined ? "-" : met ? "met" : "MISSED");
const rows = results.map((r) => [r.scenario, r.metric, r.tidemark, r.peer, r.target, verdict(r.met)]);
const headers = ["scenario", "metric", "tidemark", "peer (same run)", "target", ""];
process.stdout.write(`${table(headers, rows)}\n`);

if (!values["no-write"]) {
  const args = process.argv.slice(2);
  const command = args.length > 0 ? `npm run bench -- ${args.join(" ")}` : "npm run bench";
  const markdown = [
    "# Benchmarks",
    "",
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}, against the in-process emulator (fauxqs) on 127.0.0.1;`,
    `rclone ${"v1.60"} from Debian against the same emulator, through the same counting proxy.`,
    "",
    `Command: \`${command}\` (${runs} runs per scenario, medians; scale ${scale}).`,
    "",
    `| ${headers.join(" | ")} |`,
    `| ${headers.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    "",
  ].join("\n");
  writeFileSync(new URL("../BENCHMARKS.md", import.meta.url), markdown);
  process.stderr.write("wrote BENCHMARKS.md\n");
}
