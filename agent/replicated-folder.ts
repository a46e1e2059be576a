// Whether a path a command would write (`restore --to`) lies in a folder the
// agent replicates: a copy restored inside a set's source folder is sent back
// into that set as new files (the target then holds the set twice, and its
// history too). Restoring a set over its own folder (in place) is not that.
// Real paths come from the caller (root-places.ts realPaths: a set's root may
// be on a hung network file system, looked at within a time limit).

import { relative, sep } from "node:path";
import { pathWithin } from "./config.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";

/**
 * The file set whose source folder holds path (absolute), where the agent would replicate what is written there:
 * inside a set's folder and not excluded, or another set's folder itself. Undefined when none does, and for path
 * being the folder of `own`, the set restored (a restore in place).
 */
export function replicatingSet(sets: readonly SetSpec[], path: string, own: string, realOf: (path: string) => string): SetSpec | undefined {
  const target = realOf(path);
  return sets.find((spec) => {
    if (spec.volume) return false;
    const root = realOf(spec.root);
    if (!pathWithin(target, root)) return false;
    const rel = relative(root, target);
    if (rel === "") return spec.name !== own;
    // Below an excluded folder (or itself excluded): the agent does not replicate it.
    const parts = rel.split(sep);
    return !parts.some((_, i) => isExcluded(spec, parts.slice(0, i + 1).join("/")));
  });
}

/**
 * The file sets other than `own` whose source folder is path (absolute) or lies below it: what `restore --delete`
 * into path would remove as "not in the snapshot".
 */
export function setsInside(sets: readonly SetSpec[], path: string, own: string, realOf: (path: string) => string): SetSpec[] {
  const target = realOf(path);
  return sets.filter((spec) => spec.name !== own && pathWithin(realOf(spec.root), target));
}
