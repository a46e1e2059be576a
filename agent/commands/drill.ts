// `tidemark drill`: prove a recovery point restores. The drill runs here
// (reading the bucket with the agent's credentials); its report travels to
// the target through the set's stream, since an agent may write only staging/.

import { drillReportKey } from "../../contract/layout.ts";
import type { DrillReport } from "../../contract/drills.ts";
import { configPath, loadConfig } from "../config.ts";
import { runDrill, type DrillOutcome } from "../drill.ts";
import { escapeControl, formatBytes } from "../format.ts";
import type { Progress } from "../operations.ts";
import { createProgressView } from "../progress.ts";
import { originPhrase } from "../snapshot-origin.ts";
import { stringOption, type Command } from "./command.ts";
import { checkSet, operate } from "./operate.ts";
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

The report is printed and sent through the set's stream to the target,
which writes it to drills/SET/ID.json and counts DrillPassed / DrillFailed
(the stack alarms when no drill passed for tidemark:drillMaxAgeHours). Uses
the running agent to send it (one still starting is waited for, up to 60 s),
else starts one for the duration (another command's own agent is waited for
to end first, up to 5 min). Drills run
on a schedule from the config's "drills" list in a running agent.

Options:
  --snapshot ID   the snapshot to drill, or "latest" (default: the newest, from the agent's
                  stream or the queue alike; the report's recovery point says which)
  --at TIME       a moment of the protection window instead (as \`restore --at\`: ISO 8601 or 15m, 2h, 3d ago)
  --to DIR        restore into DIR (empty or missing) instead of a temporary folder
  --check CMD     shell command run with the restored tree as its working folder;
                  a non-zero exit fails the drill (its output is in the report)
  --keep          keep the restored tree
  --json          print the report as JSON
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Exit codes: 0 the drill passed, ${DRILL_FAILED} it failed (every bad path named), 1 it could not run.

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
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, positionals[0], "drill");
    const json = values.json === true;
    const view = json ? undefined : createProgressView({ tty: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) });
    const snapshot = stringOption(values.snapshot);
    const at = stringOption(values.at);
    const to = stringOption(values.to);
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
    process.stdout.write(json ? `${JSON.stringify({ ...report, ...torn }, null, 2)}\n` : `${describe(outcome)}\n`);
    try {
      await operate(config, "/drill-report", { set, report }, async (deps) => ({ seq: await deps.agent.journalDrill(set, report) }), { quiet: json });
      if (!json) process.stdout.write(`  report: sent to the target, written to ${drillReportKey(set, report.id)} when it gets there\n`);
    } catch (error) {
      process.stderr.write(`tidemark: the drill's report was not sent to the target: ${(error as Error).message}\n`);
      if (report.passed) return 1;
    }
    return report.passed ? 0 : DRILL_FAILED;
  },
};
