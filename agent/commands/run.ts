import { startFolderReader } from "../folder-stats.ts";
import { StartInterruptedError } from "../interrupt.ts";
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
    const [{ configPath, loadConfig }, { createLogger }, { startAgent }] = await Promise.all([import("../config.ts"), import("../log.ts"), import("../runtime.ts")]);
    const config = loadConfig(configPath(stringOption(values.config)));
    const log = createLogger({ json: values["json-logs"] === true, level: values.verbose === true ? "debug" : "info" });
    // Listening from the first moment: a signal while the agent starts stops it as cleanly as one after.
    const stopping = untilSignal();
    const interrupt = new AbortController();
    void stopping.then(() => interrupt.abort());
    let running: RunningAgent;
    try {
      running = await startAgent(config, log, { signal: interrupt.signal });
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
