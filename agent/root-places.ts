// The checks of the sets' roots that need the file system, made where waiting
// on a root is the command's job (the agent's start, doctor), not when any
// command loads the config: a stat or realpath of a hard-mounted NFS root whose
// server went away never returns, and `tidemark status` or `stop` must not hang
// on it. Each look goes through the agent's root look (a process of its own,
// root-look-process.ts) within its time limit.

import { basename, dirname, join } from "node:path";
import { checkPlaces, checkSources, ConfigError, type AgentConfig } from "./config.ts";
import { answerWithin, RootUnansweredError, type RootWatchOptions } from "./root-watch.ts";
import { RootLookProcess } from "./root-look-process.ts";
import type { RootLook } from "./set-roots.ts";
import type { SetSpec } from "./set-spec.ts";

/** The real path of a path that may not exist yet (config.ts realPathOf), through the look within its time limit. */
async function realPathThrough(look: Pick<RootLook, "realpath">, path: string, options: RootWatchOptions): Promise<string> {
  try {
    return await answerWithin(look.realpath(path), path, options);
  } catch (error) {
    const parent = dirname(path);
    if ((error as NodeJS.ErrnoException).code !== "ENOENT" || parent === path) throw error;
    return join(await realPathThrough(look, parent, options), basename(path));
  }
}

/**
 * Checks every set's root before the agent starts on them (or doctor reports): a root of a set not yet replicated
 * must be there and readable (checkSources; one that does not answer refuses the start, as an unreadable one does),
 * and no two sets may overlap by real path, symlinks included (checkPlaces). A root that does not answer is compared
 * by its path as written: the roots that did not are returned, for a warning.
 */
export async function checkRoots(
  config: AgentConfig,
  held: (set: string) => boolean,
  look: Pick<RootLook, "stat" | "realpath">,
  options: RootWatchOptions = {},
): Promise<readonly RootUnansweredError[]> {
  // The stat answered in time: the synchronous checks after it read what the file system just answered.
  for (const set of config.sets) {
    if (!set.volume && held(set.name)) continue;
    try {
      await answerWithin(look.stat(set.root), set.root, options);
    } catch (error) {
      if (error instanceof RootUnansweredError) throw new ConfigError(`set "${set.name}": ${error.message}`);
    }
    checkSources({ ...config, sets: [set] });
  }
  const { realOf, unanswered } = await realPaths([...config.sets.map((set) => set.root), config.stateDir], look, options);
  checkPlaces(config, realOf);
  return unanswered;
}

/** Real paths looked up through the look, and the looks that did not answer in time. */
export interface RealPaths {
  /** A path's real path; one that did not answer (or failed otherwise, EACCES on the way), as written. */
  readonly realOf: (path: string) => string;
  readonly unanswered: readonly RootUnansweredError[];
}

/** The real paths of absolute paths that may not exist yet, looked up at once, each within the time limit. */
export async function realPaths(paths: readonly string[], look: Pick<RootLook, "realpath">, options: RootWatchOptions = {}): Promise<RealPaths> {
  const unanswered: RootUnansweredError[] = [];
  // At once: each root that does not answer costs its time limit, not one after the other.
  const reals = await Promise.all(
    paths.map((path) =>
      realPathThrough(look, path, options).catch((error: unknown) => {
        if (error instanceof RootUnansweredError) unanswered.push(error);
        return path;
      }),
    ),
  );
  const real = new Map(paths.map((path, i) => [path, reals[i] ?? path]));
  return { realOf: (path) => real.get(path) ?? path, unanswered };
}

/**
 * For a command writing into `to` (restore, drill): the real paths of it and of the sets' folders, through a look
 * process of the command's own, closed after. A root that does not answer is compared as written, with a warning.
 */
export async function realPathsAround(sets: readonly SetSpec[], to: string, warn: (line: string) => void): Promise<(path: string) => string> {
  const look = new RootLookProcess(sets.length + 1);
  try {
    const { realOf, unanswered } = await realPaths([to, ...sets.filter((set) => !set.volume).map((set) => set.root)], look);
    for (const error of unanswered) warn(`warning: ${error.message}: whether ${to} lies inside a set is judged by the paths as written`);
    return realOf;
  } finally {
    look.close();
  }
}
