// A small tmpfs for the tests that fill a disk to its last byte: mounted only where this process may mount (root with
// CAP_SYS_ADMIN; a container may refuse it even to root), and always unmounted, lazily when something still holds it.

import { execFileSync } from "node:child_process";
import { tempDir } from "./tree.ts";

/** Whether a tmpfs can be mounted here: tried once, on a folder of its own, and unmounted at once. */
export const canMountTmpfs: boolean = (() => {
  if (process.getuid?.() !== 0) return false;
  const probe = tempDir("tidemark-mount-probe-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe.path], { stdio: "ignore" });
  } catch {
    probe.remove();
    return false;
  }
  unmountTmpfs(probe.path);
  probe.remove();
  return true;
})();

/** Mounts a tmpfs of sizeMiB on dir (an existing folder). */
export function mountTmpfs(dir: string, sizeMiB: number): void {
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m`, "tmpfs", dir]);
}

/** Unmounts dir; lazily (detached now, freed once nothing holds it) when it is busy, so no test leaves a mount. */
export function unmountTmpfs(dir: string): void {
  try {
    execFileSync("umount", [dir], { stdio: "ignore" });
  } catch {
    execFileSync("umount", ["-l", dir], { stdio: "ignore" });
  }
}
