// `tidemark drill`: prove a recovery point restores. The drill runs here
// (reading the bucket with the agent's credentials); its report travels to
// the target through the set's stream, since an agent may write only staging/.

import { resolve } from "node:path";
import { drillReportKey } from "../../contract/layout.ts";
import type { DrillReport } from "../../contract/drills.ts";
import { configPath, loadConfig, type AgentConfig } from "../config.ts";
import { runDrill, type DrillOutcome } from "../drill.ts";
import { setIdDroppedLine } from "../restore-writer.ts";
import { escapeControl, formatBytes } from "../format.ts";
import type { Progress } from "../operations.ts";
import { createProgressView } from "../progress.ts";
import { originPhrase } from "../snapshot-origin.ts";
import { stringOption, UsageError, type Command } from "./command.ts";
import { checkSet, operate } from "./operate.ts";
import type { CommandWaits } from "../command-agent-wait.ts";
import { keepDrillReport } from "../drill-kept.ts";
import { replicatingSet } from "../replicated-folder.ts";
import { realPathsAround } from "../root-places.ts";
import { setArgument } from "./set-argument.ts";
import { withTargetStore } from "./target-store.ts";

/** Exit code of a drill that failed. */
export const DRILL_FAILED = 3;

function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 172_800_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} days`;
}

function describe(outcome: DrillOutcome): string {
  const r = outcome.report;
  const lines = [
    `drill ${r.id} of set ${r.set}: ${r.passed ? "PASSED" : "FAILED"}`,
    `  recovery point: ${r.recoveryPoint.kind} ${r.recoveryPoint.id}, taken ${r.recoveryPoint.takenAt}${r.recoveryPoint.kind === "snapshot" ? originPhrase(r.recoveryPoint) : ""}`,
    `  RPO: ${duration(Math.max(0, r.rpo.ageMs))} old${r.rpo.lagMs !== null ? `; the target was ${duration(r.rpo.lagMs)} behind the source at that point` : ""}`,
    `  RTO: ${duration(r.rto.totalMs)} (restore ${duration(r.rto.restoreMs)}, compare ${duration(r.rto.verifyMs)}${r.check ? `, check ${duration(r.rto.checkMs)}` : ""}); ${r.entries} entries, ${formatBytes(r.bytes)}`,
  ];
  if (r.check) {
    const how = r.check.timedOut ? "timed out" : r.check.code === null ? "was killed" : `exited with ${r.check.code}`;
    lines.push(`  check \`${r.check.command}\`: ${r.check.passed ? "passed" : "FAILED"} (${how})`);
    if (!r.check.passed && r.check.output.trim() !== "") lines.push(...r.check.output.trim().split("\n").slice(-10).map((line) => `    | ${line}`));
  }
  lines.push(`  restored tree: ${r.scratch.kept ? `kept at ${r.scratch.path}` : `removed (${r.scratch.path})`}`);
  if (outcome.problems.length > 0) {
    lines.push(`  ${outcome.problems.length} entries do not match the recovery point:`);
    for (const problem of outcome.problems) lines.push(`    ${JSON.stringify(problem.path)}: ${problem.reason}`);
  }
  const unnamed = outcome.leftOutUnnamed ?? 0;
  if (unnamed > 0) lines.push(`  and ${unnamed} more entries left out of snapshot ${r.recoveryPoint.id} when it was taken, which its summary does not name: not restored either`);
  if (outcome.setIdDropped) lines.push(`  note: ${setIdDroppedLine(outcome.setIdDropped)}; as every restore does, so the comparison expects it`);
  const torn = outcome.possiblyTorn;
  if (torn) {
    const names = torn.paths.map((path) => escapeControl(JSON.stringify(path))).join(", ");
    const more = torn.count > torn.paths.length ? ` and ${torn.count - torn.paths.length} more` : "";
    lines.push(
      `  warning: snapshot ${r.recoveryPoint.id} is TORN: ${torn.count} file(s) kept changing while its marker read them and were restored as read, possibly no state they were ever in (${names}${more}); the comparison proves only that they are as read, ${r.check ? "the check is what tests them" : "give --check to test them"} (quiesce with \`tidemark task --quiesce\` for an exact point)`,
    );
  }
  return lines.join("\n");
}

/** What became of a drill's report (`delivery` in --json). */
export type DrillDelivery =
  /** In the set's journal: the target writes it once it gets there (`unsent`: why it has not left yet). */
  | { readonly state: "journaled"; readonly unsent?: string }
  /** Not journaled: kept in the state folder, journaled by the next agent of the set (named by `tidemark status`). */
  | { readonly state: "kept"; readonly file: string; readonly reason: string }
  /** Neither journaled nor kept (the state folder took no file). */
  | { readonly state: "lost"; readonly reason: string };

/**
 * Sends a drill's report through the set's stream. A report no agent took (another command's own agent kept the state
 * folder past the wait, an agent that never answered) is kept in the state folder then, for the set's next agent;
 * one an agent took leaves no file there.
 */
export async function sendDrillReport(config: AgentConfig, report: DrillReport, options: { quiet: boolean; waits?: CommandWaits }): Promise<DrillDelivery> {
  let journaled = false;
  try {
    await operate(
      config,
      "/drill-report",
      { set: report.set, report },
      async (deps) => {
        const seq = await deps.agent.journalDrill(report.set, report);
        journaled = true;
        return { seq };
      },
      { quiet: options.quiet, ...(options.waits ? { waits: options.waits } : {}) },
    );
    return { state: "journaled" };
  } catch (error) {
    const reason = (error as Error).message;
    // Journaled by this command's own agent, then the send failed (the drain): it leaves with the set's next send.
    if (journaled) return { state: "journaled", unsent: reason };
    try {
      return { state: "kept", file: keepDrillReport(config.stateDir, report), reason };
    } catch (keepError) {
      return { state: "lost", reason: `${reason}; it could not be kept in ${config.stateDir} either (${(keepError as Error).message})` };
    }
  }
}

function deliveryLine(delivery: DrillDelivery, set: string, id: string): string {
  switch (delivery.state) {
    case "journaled":
      return delivery.unsent === undefined
        ? `sent to the target, written to ${drillReportKey(set, id)} when it gets there`
        : `journaled, not sent yet (${delivery.unsent}): it leaves with the set's next send, and is written to ${drillReportKey(set, id)}`;
    case "kept":
      return `NOT SENT YET (${delivery.reason}); kept at ${delivery.file}: the set's next agent on this state folder sends it (\`tidemark run\` within a minute, or at its start; or any command's own agent for set ${set}), and \`tidemark status\` names it until then`;
    case "lost":
      return "NOT SENT (see below)";
  }
}

export const drillCommand: Command = {
  name: "drill",
  help: `Usage: tidemark drill SET [--snapshot ID|latest] [--at TIME] [--to DIR] [--check CMD] [--keep] [--json] [--config FILE]

Proves that a recovery point restores: restores it into a scratch folder,
checks every entry against the recovery point's manifest (content sha256,
kind, mode, mtime, symlink targets, hard links, nothing extra), runs the
application's own check inside the restored tree, and measures
  RTO: how long restoring and checking took;
  RPO: how old the recovery point is, and how far behind the source the
       target was when it reached the point (when known).
The scratch folder is removed afterwards unless --keep is given.
Files are restored without their set-uid and set-gid bits, as by every
restore (owners are not kept): the comparison expects that, and the drill
names those files in a note (--json: "setIdDropped").

The report is printed and sent through the set's stream to the target,
which writes it to drills/SET/ID.json and counts DrillPassed / DrillFailed
(the stack alarms when no drill passed for tidemark:drillMaxAgeHours). Uses
the running agent to send it (one still starting is waited for, up to 60 s),
else starts one for the duration (another command's own agent is waited for
to end first, up to 5 min). A report no agent took meanwhile is not lost:
it is then kept in the state folder (drill-reports/ID.json, owned as the
state folder) and sent by the set's next agent (\`tidemark run\` at its
start and every minute, or any command's own agent for the set);
\`tidemark status\` names it until then, and --json says where it went
("delivery": journaled, kept, or lost). A report an agent took leaves no
file. Drills run on a schedule from the config's "drills" list in a
running agent.

Options:
  --snapshot ID   the snapshot to drill, or "latest" (default: the newest, from the agent's
                  stream or the queue alike; the report's recovery point says which)
  --at TIME       a moment of the protection window instead (as \`restore --at\`: ISO 8601 or 15m, 2h, 3d ago)
  --to DIR        restore into DIR (empty or missing) instead of a temporary folder;
                  not inside a folder the agent replicates (any set's, the drilled one's too)
  --check CMD     shell command run with the restored tree as its working folder;
                  a non-zero exit fails the drill (its output is in the report)
  --keep          keep the restored tree
  --json          print the report as JSON
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Exit codes: 0 the drill passed, ${DRILL_FAILED} it failed (every bad path named), 1 it could not run
(or it passed and its report could be neither sent nor kept).

Examples:
  tidemark drill db
  tidemark drill db --check 'sqlite3 app.db "PRAGMA integrity_check" | grep -qx ok'
  tidemark drill db --snapshot snap-20261124T020000Z-3f9a1c --to /srv/drill --keep
  tidemark drill db --json | jq '.rto.totalMs'`,
  positionals: true,
  options: {
    snapshot: { type: "string" },
    at: { type: "string" },
    to: { type: "string" },
    check: { type: "string" },
    keep: { type: "boolean" },
    json: { type: "boolean" },
    config: { type: "string" },
  },
  async run(values, positionals) {
    const named = setArgument(positionals[0], "drill", stringOption(values.config));
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, named, "drill");
    const json = values.json === true;
    const view = json ? undefined : createProgressView({ tty: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) });
    const snapshot = stringOption(values.snapshot);
    const at = stringOption(values.at);
    const to = stringOption(values.to);
    // A drill's copy inside a replicated folder would be sent back into that set as new files: never (no --force here).
    const into = to !== undefined ? replicatingSet(config.sets, resolve(to), "", await realPathsAround(config.sets, resolve(to), (line) => process.stderr.write(`${escapeControl(line)}\n`))) : undefined;
    if (into) {
      throw new UsageError(
        `--to ${escapeControl(to ?? "")} is inside the folder of set ${into.name} (${escapeControl(into.root)}), which the agent replicates: the drill's copy would be sent back into set ${into.name} as new files. Drill into a folder outside every set`,
      );
    }
    const check = stringOption(values.check);
    let outcome: DrillOutcome;
    try {
      outcome = await withTargetStore(config, (store) =>
        runDrill(store, set, {
          ...(snapshot !== undefined ? { snapshot } : {}),
          ...(at !== undefined ? { at } : {}),
          ...(to !== undefined ? { to } : {}),
          ...(check !== undefined ? { check } : {}),
          keep: values.keep === true,
          ...(view ? { onProgress: (p: Progress) => view.update(p) } : {}),
        }),
      );
    } finally {
      view?.done();
    }
    const report: DrillReport = outcome.report;
    const torn = outcome.possiblyTorn ? { possiblyTorn: outcome.possiblyTorn } : {};
    const setId = outcome.setIdDropped ? { setIdDropped: outcome.setIdDropped } : {};
    if (!json) process.stdout.write(`${describe(outcome)}\n`);
    const delivery = await sendDrillReport(config, report, { quiet: json });
    // Under --json the report is printed once its delivery is known: a script reads both at once.
    if (json) process.stdout.write(`${JSON.stringify({ ...report, ...torn, ...setId, delivery }, null, 2)}\n`);
    else process.stdout.write(`  report: ${deliveryLine(delivery, set, report.id)}\n`);
    if (delivery.state === "lost") {
      process.stderr.write(`tidemark: the drill's report was not sent to the target: ${delivery.reason}\n`);
      if (report.passed) return 1;
    }
    return report.passed ? 0 : DRILL_FAILED;
  },
};
