import { startFolderReader } from "../folder-stats.ts";
import { StartInterruptedError } from "../interrupt.ts";
import { readFileSync } from "node:fs";
import type { AgentConfig } from "../config.ts";
import { configPath } from "../config-path.ts";
import type { RootLookProcess } from "../root-look-process.ts";
import type { RunningAgent } from "../runtime.ts";
import { stringOption, untilSignal, type Command } from "./command.ts";

export const runCommand: Command = {
  name: "run",
  help: `Usage: tidemark run [--config FILE] [--json-logs] [--verbose]

Runs the agent: scans every set (a full mirror the first time, then what
changed while the agent was down), watches the trees, journals every change
and sends it in order to the target queue. Runs until SIGINT/SIGTERM (also
while it starts: it then stops at its next step, exit code 0); what is
journaled but not yet sent is sent at the next start. A full disk pauses
journaling until there is space again (then a scan catches up). A corrupt
journal (found when it opens: every page is checked) is set aside, renamed
journal.db.corrupt-<time> and kept, and the agent starts a new one, as after
a lost journal: the target resyncs each set, sending only what it lacks; one
found corrupt while running stops the agent with exit code 1, and its next
start sets it aside. \`tidemark status\` names it. A journal the agent's user
may not open stops it with exit code 1, naming the file; nothing is changed.

Options:
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)
  --json-logs     log one JSON object per line on stderr
  --verbose       log debug details

Example:
  tidemark run --config /etc/tidemark/tidemark.config.json`,
  options: { config: { type: "string" }, "json-logs": { type: "boolean" }, verbose: { type: "boolean" } },
  async run(values) {
    // The scan's folder worker first, and the agent's modules loaded only now: the worker's thread starts on the other
    // core while this one loads them, instead of after them at the scan's first listing (bench/notes.md).
    void startFolderReader();
    // So does the process that looks at the sets' roots (root-look-process.ts): its Node start was on the way to the
    // first send, behind the start's check of every root.
    const file = configPath(stringOption(values.config));
    const rootLook = await earlyRootLook(file);
    const [{ loadConfig }, { createLogger }, { startAgent }] = await Promise.all([import("../config.ts"), import("../log.ts"), import("../runtime.ts")]);
    let config: AgentConfig;
    try {
      config = loadConfig(file);
    } catch (error) {
      rootLook?.close();
      throw error;
    }
    const log = createLogger({ json: values["json-logs"] === true, level: values.verbose === true ? "debug" : "info" });
    // Listening from the first moment: a signal while the agent starts stops it as cleanly as one after.
    const stopping = untilSignal();
    const interrupt = new AbortController();
    void stopping.then(() => interrupt.abort());
    let running: RunningAgent;
    try {
      running = await startAgent(config, log, { signal: interrupt.signal, ...(rootLook ? { rootLook } : {}) });
    } catch (error) {
      if (!(error instanceof StartInterruptedError)) throw error;
      log.info("stopping", { signal: await stopping, while: error.what });
      return 0;
    }
    log.info("replicating", { sets: config.sets.map((s) => s.name).join(","), queue: config.queueUrl });
    const outcome = await Promise.race([stopping, running.failed]);
    if (outcome instanceof Error) {
      // The journal is what failed: stopping may fail on it too, and the reason to report is the first one.
      await running.stop().catch(() => undefined);
      throw outcome;
    }
    log.info("stopping", { signal: outcome });
    await running.stop();
    return 0;
  },
};

/**
 * The root look process started for as many sets as the config file lists, read as plain JSON (the agent's modules,
 * the schema's among them, are not loaded yet). None if the file does not read as such: loadConfig names why, and
 * the start makes its own (runtime.ts also replaces one made for fewer roots than the loaded config has).
 */
async function earlyRootLook(file: string): Promise<RootLookProcess | undefined> {
  let sets: unknown;
  try {
    sets = (JSON.parse(readFileSync(file, "utf8")) as { sets?: unknown }).sets;
  } catch {
    return undefined;
  }
  if (!Array.isArray(sets)) return undefined;
  const { RootLookProcess } = await import("../root-look-process.ts");
  return new RootLookProcess(sets.length + 1).start();
}
