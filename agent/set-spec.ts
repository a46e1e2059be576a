// A replication set as the agent's scanner and watcher see it.

import { basename, matchesGlob } from "node:path";

export interface SetSpec {
  readonly name: string;
  /** Absolute path of the protected tree. */
  readonly root: string;
  /** Globs of paths not replicated: without a '/', matched against the name alone (as in .gitignore). */
  readonly exclude: readonly string[];
}

/** True when a set path is excluded; an excluded directory excludes everything below it. */
export function isExcluded(spec: SetSpec, path: string): boolean {
  const name = basename(path);
  return spec.exclude.some((glob) => (glob.includes("/") ? matchesGlob(path, glob) : matchesGlob(name, glob)));
}
