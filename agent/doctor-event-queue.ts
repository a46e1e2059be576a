// `tidemark doctor`'s check of the kernel's inotify event queue against the
// sets' size. One change that touches more entries than the queue holds (an
// unpacked archive, a checkout, a bulk delete) while the agent is busy can
// overflow it; the agent notices (event-queue.ts) and scans the whole set, but
// a larger queue avoids those scans.

import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { AgentConfig } from "./config.ts";
import type { Check } from "./doctor.ts";
import { QUEUE_LIMIT_FILE, readQueueLimit } from "./event-queue.ts";

/** Counting a set's entries stops here: a rough count is enough to compare with the queue's limit. */
const ENTRY_COUNT_BUDGET_MS = 2_000;

/** Files, folders and other entries under root (root included), counted until the budget runs out. */
export function countEntries(root: string, budgetMs = ENTRY_COUNT_BUDGET_MS): { entries: number; complete: boolean } {
  const deadline = Date.now() + budgetMs;
  const pending = [root];
  let entries = 1;
  while (pending.length > 0) {
    if (Date.now() > deadline) return { entries, complete: false };
    const dir = pending.pop() ?? root;
    try {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        entries += 1;
        if (entry.isDirectory()) pending.push(join(dir, entry.name));
      }
    } catch {
      // An unreadable folder is the scan's to report.
    }
  }
  return { entries, complete: true };
}

/** The sets' entries against fs.inotify.max_queued_events: a warning when one change of every entry would not fit. */
export function checkEventQueue(config: Pick<AgentConfig, "sets">, limitFile = QUEUE_LIMIT_FILE, budgetMs = ENTRY_COUNT_BUDGET_MS): Check {
  const trees = config.sets.filter((set) => !set.volume);
  if (trees.length === 0) return { name: "inotify queue", level: "ok", detail: "no folder sets" };
  const limit = readQueueLimit(limitFile);
  if (limit === undefined) return { name: "inotify queue", level: "ok", detail: `cannot read ${limitFile}: no inotify event queue to check here` };
  let entries = 0;
  let complete = true;
  for (const set of trees) {
    const counted = countEntries(set.root, budgetMs);
    entries += counted.entries;
    complete &&= counted.complete;
  }
  const count = `${complete ? "" : "at least "}${entries} entries`;
  if (entries <= limit) return { name: "inotify queue", level: "ok", detail: `${count}, queue ${limit} events` };
  return {
    name: "inotify queue",
    level: "warn",
    detail: `${count}, queue ${limit} events: a change touching more entries than that while the agent is busy can overflow it; the agent notices and scans the whole set, but raise it to avoid those scans: sysctl fs.inotify.max_queued_events=${Math.max(limit * 2, entries * 2)}`,
  };
}
