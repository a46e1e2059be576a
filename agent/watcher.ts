// chokidar as a source of hints: an event only says "look at this path";
// capture decides what changed. Errors are never swallowed: they trigger a
// barrier scan, which catches whatever the watcher missed.

import { relative, sep } from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { setPathProblem } from "../contract/paths.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";

export interface WatchHandlers {
  /** A set path that may have changed. */
  hint(path: string): void;
  /** The watcher failed or overflowed: what it reports can no longer be trusted. */
  error(error: Error): void;
  ready?(): void;
}

export interface SetWatcher {
  close(): Promise<void>;
}

export function watchSet(spec: SetSpec, handlers: WatchHandlers, ignoreAbsolute: readonly string[] = []): SetWatcher {
  const toSetPath = (abs: string) => relative(spec.root, abs).split(sep).join("/");
  const ignored = (abs: string) => {
    if (ignoreAbsolute.some((dir) => abs === dir || abs.startsWith(`${dir}${sep}`))) return true;
    const path = toSetPath(abs);
    return path !== "" && !path.startsWith("..") && isExcluded(spec, path);
  };
  const watcher: FSWatcher = watch(spec.root, {
    ignoreInitial: true,
    followSymlinks: false,
    ignored,
    // Atomic-save detection delays events; capture handles temp files itself.
    atomic: false,
  });
  watcher.on("all", (_event, abs) => {
    const path = toSetPath(abs);
    if (path === "" || path.startsWith("..") || setPathProblem(path)) return;
    handlers.hint(path);
  });
  watcher.on("error", (error) => handlers.error(error instanceof Error ? error : new Error(String(error))));
  watcher.on("ready", () => handlers.ready?.());
  return { close: () => watcher.close() };
}
