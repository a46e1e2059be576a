// A replication set as the agent's scanner and watcher see it.

import { basename, matchesGlob } from "node:path";

export interface SetSpec {
  readonly name: string;
  /** Absolute path of the protected tree; for a volume set, of the block device or image file. */
  readonly root: string;
  /** Globs of paths not replicated: without a '/', matched against the name alone (as in .gitignore). */
  readonly exclude: readonly string[];
  /** Present for a volume set: the root is replicated as 512 KiB blocks, not as a tree. */
  readonly volume?: VolumeSource;
}

export interface VolumeSource {
  /** Bytes of the volume at the target (an image smaller than this reads as zeros past its end); the device's or file's size when absent. */
  readonly sizeBytes?: number;
  /** How often the volume is read for changes when no watcher event says so (a device's writes raise none). */
  readonly scanMs: number;
}

/** True when a set path is excluded; an excluded directory excludes everything below it. */
export function isExcluded(spec: SetSpec, path: string): boolean {
  const name = basename(path);
  return spec.exclude.some((glob) => (glob.includes("/") ? matchesGlob(path, glob) : matchesGlob(name, glob)));
}
