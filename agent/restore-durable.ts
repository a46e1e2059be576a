// How a restore makes its files durable before it names them: not one fsync
// a file (5,000 small files cost seconds of CPU in journal commits,
// bench/notes.md), but the whole file system synced once (syncfs(2), through
// coreutils' `sync -f`) after every file is written under its temp name and
// before any is renamed into place. Where that cannot be done (no `sync -f`,
// or it fails, or the system is not Linux, whose `sync` may return before the
// data is on disk) the caller fsyncs each file instead, as before. Either way a
// name the restore put in place never holds bytes a crash could lose.

import { spawn } from "node:child_process";

/** `sync -f dir`: true once the file system holding dir is synced, false when it could not be (missing tool, unknown option, an error). */
function syncFileSystemOf(dir: string, command: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(command, ["-f", dir], { stdio: "ignore" });
    child.once("error", () => resolve(false));
    child.once("exit", (code) => resolve(code === 0));
  });
}

/**
 * Syncs the file systems holding `dirs` (one folder of each device the restore wrote to), one after another; true
 * when every one was synced. `command` is the sync tool (tests name one that fails).
 */
export async function syncFileSystems(dirs: Iterable<string>, command = "sync"): Promise<boolean> {
  if (process.platform !== "linux") return false;
  for (const dir of dirs) if (!(await syncFileSystemOf(dir, command))) return false;
  return true;
}
