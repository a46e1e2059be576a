// `npm run bench`: runs the scenarios, prints a table, and writes
// BENCHMARKS.md with the machine, the exact command and the medians.
//
//   npm run bench                       every scenario, 3 runs each, full size
//   npm run bench -- --only delta       one scenario (initial, delta, steady, marker, memory, applier, cost)
//   npm run bench -- --scale 0.1        smaller trees, for a quick look (not for BENCHMARKS.md)
//   npm run bench -- --rewrite          run nothing; write BENCHMARKS.md from the kept results and notes

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { table } from "../agent/format.ts";
import { costModel } from "./cost.ts";
import { agentMemory, applierThroughput, deltaChange, initialMirror, markerLatency, steadyLoad } from "./scenarios.ts";
import { machine, type Result } from "./support.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    scale: { type: "string", default: "1" },
    seconds: { type: "string", default: "20" },
    only: { type: "string", multiple: true },
    "no-write": { type: "boolean" },
    /** Run nothing: write BENCHMARKS.md again from bench/results.json and bench/notes.md. */
    rewrite: { type: "boolean" },
  },
});
const runs = Number(values.runs);
const scale = Number(values.scale);
const seconds = Number(values.seconds);
const only = new Set(values.only ?? []);
const wanted = (name: string) => values.rewrite !== true && (only.size === 0 || only.has(name));

const scenarios: [string, () => Promise<Result[]>][] = [
  ["initial", () => initialMirror(runs, scale)],
  ["delta", () => deltaChange(runs)],
  ["steady", () => steadyLoad(scale, seconds)],
  ["marker", () => markerLatency(runs, scale)],
  ["memory", () => agentMemory(scale)],
  ["applier", () => applierThroughput(runs)],
  ["cost", () => costModel(scale)],
];

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
  measured[name] = { rows: await run(), command, date: new Date().toISOString().slice(0, 10), machine: machine() };
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
  const ordered = scenarios.map(([name]) => [name, all[name]] as const).filter((entry) => entry[1] !== undefined);
  const markdown = [
    "# Benchmarks",
    "",
    "Against the in-process emulator (fauxqs) on 127.0.0.1; rclone v1.60 from Debian against the same emulator, through the same counting proxy.",
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
