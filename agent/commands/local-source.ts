// `tidemark local --source`: starts the agent on the source, saying so first.
// The first scan of a large tree (a node_modules) can take minutes, and a
// command that prints nothing meanwhile looks dead. A stop (Ctrl-C, or the
// launching process gone: untilStopped) that comes during that scan ends the
// start rather than waiting for it, so no orphan keeps scanning.

import { StartInterruptedError } from "../interrupt.ts";

export interface SourceStart<A> {
  /** The folder or image replicated, and its set. */
  readonly source: string;
  readonly setName: string;
  readonly configFile: string;
  readonly write: (text: string) => void;
  /** Starts the agent; gives way with StartInterruptedError once the signal fires. */
  readonly start: (signal: AbortSignal) => Promise<A>;
  /** Resolves (with why) when the command is asked to stop; already listening before the start begins. */
  readonly stopping: Promise<string>;
}

/** The running agent, or why and while doing what it was stopped before it finished starting. */
export async function startSourceAgent<A>(options: SourceStart<A>): Promise<{ readonly agent: A } | { readonly stoppedBy: string; readonly while: string }> {
  const { source, setName, configFile, write } = options;
  write(
    `  scanning ${source} (set "${setName}") before replicating it: the first scan of a large tree can take minutes, sending as it goes; ` +
      `\`tidemark status --config ${configFile}\` shows its progress\n`,
  );
  const interrupt = new AbortController();
  void options.stopping.then(() => interrupt.abort());
  try {
    return { agent: await options.start(interrupt.signal) };
  } catch (error) {
    if (!(error instanceof StartInterruptedError)) throw error;
    return { stoppedBy: await options.stopping, while: error.what };
  }
}
