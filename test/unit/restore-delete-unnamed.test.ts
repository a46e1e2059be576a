// A snapshot that left out more entries than its summary names (it names at most 100): --delete could not tell those
// from extra entries, so it is refused before anything is written; the count is its own field, not a fake path.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it, onTestFinished } from "vitest";
import { RestoreError, restoreSnapshot } from "../../agent/restore.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { linkProblems, oneFileSnapshot } from "../support/snapshots.ts";
import { tempDir } from "../support/tree.ts";

/** kept.txt, and 103 entries left out of which the summary names the first 100 (link000 to link099). */
async function bigSnapshot(): Promise<MemoryStore> {
  const store = new MemoryStore();
  await oneFileSnapshot(store, { id: "big", path: "kept.txt", content: "kept", unreadable: linkProblems(100), unreadableCount: 103 });
  return store;
}

/** A folder to restore into that holds link100: one of the left-out entries the summary does not name. */
function treeHoldingUnnamed(): string {
  const out = tempDir("restore-unnamed-");
  onTestFinished(() => out.remove());
  const to = join(out.path, "tree");
  mkdirSync(to);
  writeFileSync(join(to, "link100"), "unnamed left-out entry");
  return to;
}

it("refuses --delete before writing anything when the snapshot left out entries it does not name", async () => {
  const store = await bigSnapshot();
  const to = treeHoldingUnnamed();
  const restore = restoreSnapshot(store, await readSnapshot(store, "s", "big"), to, { force: true, delete: true });
  await expect(restore).rejects.toThrow(RestoreError);
  await expect(restore).rejects.toThrow(/snapshot big left out 103 entries .* names only 100 .* other 3 .* restore without --delete/);
  expect(readFileSync(join(to, "link100"), "utf8")).toBe("unnamed left-out entry");
  expect(existsSync(join(to, "kept.txt"))).toBe(false);
});

it("reports the unnamed left-out entries as a count, not as a path", async () => {
  const store = await bigSnapshot();
  const to = treeHoldingUnnamed();
  const result = await restoreSnapshot(store, await readSnapshot(store, "s", "big"), to, { force: true });
  expect(result.leftOutUnnamed).toBe(3);
  expect(result.failures).toHaveLength(100);
  expect(result.failures.every((f) => f.path.startsWith("link"))).toBe(true);
  expect(result.extra).toEqual(["link100"]);
  expect(readFileSync(join(to, "kept.txt"), "utf8")).toBe("kept");
});
