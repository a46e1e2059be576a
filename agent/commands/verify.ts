// `tidemark verify`: the target compared with the source, optionally repaired.

import { runVerify, type VerifyResult } from "../operations.ts";
import { configPath, loadConfig } from "../config.ts";
import { stringOption, type Command } from "./command.ts";
import { checkSet, heldAsJson, operate } from "./operate.ts";
import { counted, escapeControl } from "../format.ts";
import { setArgument } from "./set-argument.ts";

/** Exit code when the target differs from the source and nothing was repaired. */
export const DIFFERENCES_FOUND = 3;

const LIST_LIMIT = 20;
/** Skipped entries named by verify (status names them all). */
const SKIPPED_SHOWN = 5;

function list(label: string, paths: string[], limit = LIST_LIMIT): string[] {
  if (paths.length === 0) return [];
  const shown = paths.slice(0, limit).map((p) => `  ${label} ${escapeControl(p)}`);
  return paths.length > limit ? [...shown, `  ... and ${paths.length - limit} more`] : shown;
}

/**
 * The line naming files the verification's own scan found changed behind an unchanged size and mtime: everything
 * looked sent, the target was behind for them, and a snapshot taken before may hold their old content.
 */
export function changedBehindStatLines(changed: NonNullable<VerifyResult["changedBehindStat"]>): string[] {
  const { count, paths } = changed;
  if (count === 0) return [];
  const shown = paths.slice(0, LIST_LIMIT).map((p) => `  changed   ${escapeControl(p)}`);
  return [
    `${counted(count, "file", "files")} had changed behind an unchanged size and mtime: journaled now, ahead of this verification; snapshots taken before this may hold their old content`,
    ...shown,
    ...(count > shown.length ? [`  ... and ${count - shown.length} more`] : []),
  ];
}

/**
 * 0 when the target matched (or --repair journaled the repairs) and nothing is skipped; DIFFERENCES_FOUND otherwise,
 * also when the target matched only because this verification journaled content it had missed (changedBehindStat).
 */
export function verifyExitCode(result: VerifyResult, repair: boolean): number {
  const { missing, different, extra } = result.report;
  const differences = missing.length + different.length + extra.length;
  // Skipped entries are not on the target and no repair sends them: the target does not match.
  const matched = (differences === 0 || repair) && (result.skipped ?? []).length === 0;
  return matched && (result.changedBehindStat?.count ?? 0) === 0 ? 0 : DIFFERENCES_FOUND;
}

/**
 * What a verify leaves unsent when its final send finds the set held (another key owns it): its repairs; or, when it
 * journaled none, the changes this host journaled apart from it (the verification itself finished).
 */
export function unsentAfterVerify(result: VerifyResult, unsent: number): string {
  if (result.repaired > 0) return `the ${result.repaired} repair(s) this verify journaled`;
  const { missing, different, extra } = result.report;
  const differences = missing.length + different.length + extra.length;
  return `the ${unsent} change(s) this host journaled apart from this verify (which finished, found ${differences} difference(s) and journaled no repairs)`;
}

export const verifyCommand: Command = {
  name: "verify",
  help: `Usage: tidemark verify SET [--deep] [--repair] [--json] [--config FILE]

Compares the target's copy of a set with the source and reports what is
missing on the target, what is different, and what the target has that the
source does not (orphans). The comparison rides the replication stream: it
happens when the target has applied everything journaled before it, so
changes in flight are never reported as differences.

Without --deep, sizes, mtimes, modes and recorded hashes are compared; with
--deep every source file and every target object is hashed (block by block
for large files), which finds content changed behind an unchanged size and
mtime. The agent compares ctimes too, so it finds most such
rewrites by itself; files whose content only the deep scan finds changed
(nothing in their stat moved: rewritten before this agent indexed ctimes)
are journaled ahead of the verification and named: "N files had changed
behind an unchanged size and mtime"
("changedBehindStat" in --json: the count and the first 100); the target then matches, but snapshots
taken before may hold their old content. Orphans are reported, deleted or moved aside under orphans/ as the
config's "orphans" setting says (default: report). Volume sets have no
verification: \`tidemark mirror\` reads and sends all their blocks again.

Uses the running agent (tidemark run) when there is one (one still starting
is waited for, up to 60 s), else starts one for the duration (another
command's own agent is waited for to end first, up to 5 min). Entries the
set holds and does not replicate (a FIFO, a name
the target cannot carry: \`tidemark status\` names them) are not compared:
verify counts them and names the first ${SKIPPED_SHOWN} ("skipped" in --json);
leave out what is never meant to travel (an application's socket) with the
set's "exclude" in the config.
Exit code: 0 when the target matches (or --repair journaled the repairs)
and nothing is skipped, ${DIFFERENCES_FOUND} when differences were found and not
repaired, entries are skipped, or files had changed behind an unchanged size
and mtime,
1 on errors: at once when another key owns the set on the target (this
host's sends are held until \`tidemark adopt SET\`; --json prints "error":
"sends-held"), also when that is first found at the final send (what it
journaled stays unsent until then).

Options:
  --deep          hash both sides (slow: reads everything)
  --repair        resend what is missing or different
  --json          print the report as JSON
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Examples:
  tidemark verify docs
  tidemark verify docs --deep --repair
  tidemark verify docs --json | jq '.report.missing'`,
  positionals: true,
  options: { deep: { type: "boolean" }, repair: { type: "boolean" }, json: { type: "boolean" }, config: { type: "string" } },
  async run(values, positionals) {
    setArgument(positionals[0], "verify", stringOption(values.config));
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, positionals[0], "verify");
    const deep = values.deep === true;
    const repair = values.repair === true;
    const json = values.json === true;
    let result: VerifyResult;
    try {
      result = await operate<VerifyResult>(config, "/verify", { set, deep, repair }, (deps) => runVerify(deps, set, { deep, repair, orphans: config.orphans }), { quiet: json, unsentWhenHeld: unsentAfterVerify });
    } catch (error) {
      return heldAsJson(error, json);
    }
    const { report, repaired } = result;
    const skipped = result.skipped ?? [];
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      const orphanNote = report.extra.length === 0 ? "" : ` (orphans ${report.orphans === "report" ? "reported" : report.orphans === "delete" ? "deleted" : "moved aside"})`;
      const lines = [
        `set ${set}: ${report.checked} entries compared at seq ${report.seq}${report.deep ? " (deep)" : ""}: ${report.missing.length} missing, ${report.different.length} different, ${report.extra.length} extra${orphanNote}`,
        ...list("missing  ", report.missing),
        ...list("different", report.different.map((d) => `${d.path} (${d.reason}${d.blocks ? `, blocks ${d.blocks.join(",")}` : ""})`)),
        ...list("extra    ", report.extra),
        ...(result.changedBehindStat ? changedBehindStatLines(result.changedBehindStat) : []),
      ];
      if (skipped.length > 0) {
        lines.push(`${counted(skipped.length, "entry", "entries")} not compared (not replicated; \`tidemark status ${set}\` names them all):`);
        lines.push(...list("skipped  ", skipped.map((entry) => `${entry.path} (${entry.reason})`), SKIPPED_SHOWN));
      }
      if (repair) lines.push(`${repaired} changes journaled to repair the target`);
      else if (report.missing.length + report.different.length > 0) lines.push(`run \`tidemark verify ${set} --repair\` to resend them`);
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return verifyExitCode(result, repair);
  },
};
