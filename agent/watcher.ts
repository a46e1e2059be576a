// The watcher as a source of hints: an event only says "look at this path";
// capture decides what changed. It watches folders, not files: one inotify
// watch per folder reports what happens to every entry inside it, so a set
// of a million files in ten thousand folders costs ten thousand watches and
// little memory (a watcher per file, as chokidar keeps, cost ~3 KiB a file).
// Errors are never swallowed: they trigger a barrier scan, which catches
// whatever the watcher missed; so does a possible overflow of the kernel's
// event queue, which Node does not report (event-queue.ts).

import { watch, type FSWatcher } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join, sep } from "node:path";
import { setPathProblem } from "../contract/paths.ts";
import { processEventQueue, type EventQueueWatch } from "./event-queue.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";
import { isGone } from "./skipped-names.ts";

export interface WatchHandlers {
  /** A set path that may have changed. */
  hint(path: string): void;
  /**
   * A folder was made, moved in or replaced at this path (its entry's "rename"): what the index holds below the path
   * may be another folder's (`mv pkg pkg-old && mkdir pkg`), which no event under the new folder names.
   */
  folderReplaced?(path: string): void;
  /** The watcher failed or overflowed: what it reports can no longer be trusted. */
  error(error: Error): void;
  /** Every folder of the set is watched. */
  ready?(): void;
}

export interface SetWatcher {
  close(): Promise<void>;
}

const child = (dir: string, name: string) => (dir === "" ? name : `${dir}/${name}`);


export function watchSet(spec: SetSpec, handlers: WatchHandlers, ignoreAbsolute: readonly string[] = [], queue: EventQueueWatch = processEventQueue): SetWatcher {
  const watchers = new Map<string, FSWatcher>();
  let closed = false;

  const ignored = (path: string) => {
    const abs = join(spec.root, path);
    if (ignoreAbsolute.some((dir) => abs === dir || abs.startsWith(`${dir}${sep}`))) return true;
    return path !== "" && (setPathProblem(path) !== undefined || isExcluded(spec, path));
  };
  // Not watched, but hinted: its capture names it as skipped (hinted-skips.ts), as a scan would.
  const unnamable = (path: string) => path !== "" && setPathProblem(path) !== undefined && !isExcluded(spec, path);

  const fail = (error: unknown) => {
    if (closed) return;
    handlers.error(error instanceof Error ? error : new Error(String(error)));
  };

  /** Stops watching a folder that is gone, and everything below it. */
  const forget = (dir: string) => {
    for (const [path, watcher] of watchers) {
      if (path === dir || path.startsWith(`${dir}/`)) {
        watcher.close();
        watchers.delete(path);
      }
    }
  };

  const onEvent = (dir: string, event: string, name: string | Buffer | null) => {
    queue.event();
    if (closed) return;
    if (name === null) {
      // The kernel did not say which entry: only a scan of the folder can tell.
      fail(new Error(`the watch of ${dir || "the set's root"} reported an event without a name`));
      return;
    }
    const path = child(dir, name.toString());
    if (ignored(path)) {
      if (unnamable(path) && !ignored(dir)) handlers.hint(path);
      return;
    }
    handlers.hint(path);
    // A folder appeared (watch it and what it holds) or vanished (stop watching it).
    lstat(join(spec.root, path)).then(
      (st) => {
        if (!st.isDirectory()) return undefined;
        // The folder's entry was made, removed or moved ("rename"): a watch it had may be on a folder removed meanwhile
        // (rm -r, then mkdir, before this look), which reports nothing of the one there now.
        if (event === "rename") {
          forget(path);
          handlers.folderReplaced?.(path);
        }
        if (!watchers.has(path)) return watchTree(path, true);
        return undefined;
      },
      (error: unknown) => {
        if (isGone(error)) forget(path);
        else fail(error);
      },
    ).catch(fail);
  };

  const watchDir = (dir: string): boolean => {
    if (closed || watchers.has(dir)) return false;
    let watcher: FSWatcher;
    try {
      watcher = watch(join(spec.root, dir), { persistent: true }, (event, name) => onEvent(dir, event, name));
    } catch (error) {
      if (isGone(error)) return false;
      // ENOSPC (out of inotify watches), EMFILE: the agent falls back to timed scans.
      fail(error);
      return false;
    }
    watcher.on("error", (error) => {
      if (isGone(error)) forget(dir);
      else fail(error);
    });
    watchers.set(dir, watcher);
    return true;
  };

  /**
   * Watches a folder and every folder below it, parents first (so nothing created meanwhile goes unseen). For a folder
   * that appeared (`appeared`), what each listing holds is hinted: an entry made before its folder's watch began raised
   * no event, and the capture's scan of the new folder may have listed it before that entry was made.
   */
  const watchTree = async (top: string, appeared = false): Promise<void> => {
    const pending = [top];
    while (pending.length > 0 && !closed) {
      const dir = pending.pop() ?? "";
      if (!watchDir(dir) && dir !== top) continue;
      let entries;
      try {
        entries = await readdir(join(spec.root, dir), { withFileTypes: true });
      } catch (error) {
        if (isGone(error)) continue;
        throw error;
      }
      for (const entry of entries) {
        const path = child(dir, entry.name);
        if (ignored(path)) continue;
        if (appeared && !closed) handlers.hint(path);
        if (entry.isDirectory()) pending.push(path);
      }
    }
  };

  const stopOverflowCheck = queue.onOverflow(fail);

  // Not before watchSet returns: an error handler may want to close the watcher it was given.
  setImmediate(() => {
    watchTree("").then(() => {
      if (!closed) handlers.ready?.();
    }, fail);
  });

  return {
    async close() {
      closed = true;
      stopOverflowCheck();
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}
