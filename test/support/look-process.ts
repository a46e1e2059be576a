// The root look processes (agent/root-look-process.ts) this process started,
// found through /proc: a test tells by them whether one was started, and when.

import { readdirSync, readFileSync } from "node:fs";

/** The pids of this process's root look processes (its children run with the look's argument), live ones only. */
export function lookProcessPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      // A killed child not reaped yet has no command line left.
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, "utf8").includes("--tidemark-root-look")) pids.push(Number(name));
    } catch {
      // Ended meanwhile.
    }
  }
  return pids;
}
