// `tidemark timeline`: the moments of a set the target can restore
// (`tidemark restore --at`) and the markers inside that range.

import { readTimeline, type Timeline } from "../../lambdas/target/index.ts";
import { configPath, loadConfig } from "../config.ts";
import { counted, table } from "../format.ts";
import { stringOption, type Command } from "./command.ts";
import { checkSet } from "./operate.ts";
import { withTargetStore } from "./target-store.ts";
import { setArgument } from "./set-argument.ts";

const iso = (ms: number) => new Date(ms).toISOString();

/** The timeline as text: the range, then one row per marker. */
export function describeTimeline(timeline: Timeline): string {
  const lines = [
    `set ${timeline.set}: any moment from ${iso(timeline.from)} to ${iso(timeline.to)} restores (tidemark restore ${timeline.set} --at TIME --to DIR)`,
    `${counted(timeline.changes, "change")} in ${counted(timeline.segments, "segment")}, ${counted(timeline.checkpoints, "checkpoint")}; moments are crash-consistent, markers application-consistent`,
  ];
  if (timeline.markers.length === 0) lines.push("no markers in this range");
  else lines.push(table(["AT", "SEQ", "TASK", "ACTION", "LABEL"], timeline.markers.map((m) => [iso(m.at), String(m.seq), m.id, m.action, m.label ?? ""])));
  return lines.join("\n");
}

export const timelineCommand: Command = {
  name: "timeline",
  help: `Usage: tidemark timeline SET [--json] [--config FILE]

Shows the range of moments of a set the target can restore with
\`tidemark restore SET --at TIME\` (its protection window,
tidemark:pointInTimeDays, 7 days by default), how many changes it holds, and
the task markers inside it: the application-consistent points. Reads with
the agent's credentials.

Options:
  --json          print the range (ms since the epoch) and markers as JSON
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Examples:
  tidemark timeline db
  tidemark timeline db --json | jq '.markers[-1]'`,
  positionals: true,
  options: { json: { type: "boolean" }, config: { type: "string" } },
  async run(values, positionals) {
    setArgument(positionals[0], "show the timeline of", stringOption(values.config));
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, positionals[0], "show the timeline of");
    const timeline = await withTargetStore(config, (store) => readTimeline(store, set));
    if (values.json === true) process.stdout.write(`${JSON.stringify({ ...timeline, fromIso: iso(timeline.from), toIso: iso(timeline.to) }, null, 2)}\n`);
    else process.stdout.write(`${describeTimeline(timeline)}\n`);
    return 0;
  },
};
