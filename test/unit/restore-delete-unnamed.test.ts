// A snapshot that left out more entries than its summary names (it names at most 100): --delete could not tell those
// from extra entries, so it is refused before anything is written; the count is its own field, not a fake path.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { RestoreError, restoreSnapshot } from "../../agent/restore.ts";
import { preservedKey } from "../../contract/layout.ts";
import type { SnapshotEntry } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSnapshot, writeSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { tempDir } from "../support/tree.ts";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

async function bigSnapshot(): Promise<MemoryStore> {
  const store = new MemoryStore();
  const content = "kept";
  const entry: SnapshotEntry = { path: "kept.txt", kind: "file", size: content.length, mode: 0o644, mtimeNs: "1700000000000000000", sha256: sha(content) };
  await store.put(preservedKey("s", sha(content)), Buffer.from(content));
  const named = Array.from({ length: 100 }, (_, i) => ({ path: `link${String(i).padStart(3, "0")}`, problem: "altered" }));
  await writeSnapshot(store, { id: "big", set: "s", taskId: "t", seq: 1, takenAt: "2026-01-01T00:00:00.000Z", files: 1, dirs: 0, symlinks: 0, bytes: 4, versioned: false, unreadable: named, unreadableCount: 103 }, [entry]);
  return store;
}

it("refuses --delete before writing anything when the snapshot left out entries it does not name", async () => {
  const store = await bigSnapshot();
  const out = tempDir("restore-unnamed-");
  try {
    const to = join(out.path, "tree");
    mkdirSync(to);
    writeFileSync(join(to, "link100"), "unnamed left-out entry");
    const restore = restoreSnapshot(store, await readSnapshot(store, "s", "big"), to, { force: true, delete: true });
    await expect(restore).rejects.toThrow(RestoreError);
    await expect(restore).rejects.toThrow(/snapshot big left out 103 entries .* names only 100 .* other 3 .* restore without --delete/);
    expect(readFileSync(join(to, "link100"), "utf8")).toBe("unnamed left-out entry");
    expect(existsSync(join(to, "kept.txt"))).toBe(false);
  } finally {
    out.remove();
  }
});

it("reports the unnamed left-out entries as a count, not as a path", async () => {
  const store = await bigSnapshot();
  const out = tempDir("restore-unnamed-");
  try {
    const to = join(out.path, "tree");
    mkdirSync(to);
    writeFileSync(join(to, "link100"), "unnamed left-out entry");
    const result = await restoreSnapshot(store, await readSnapshot(store, "s", "big"), to, { force: true });
    expect(result.leftOutUnnamed).toBe(3);
    expect(result.failures).toHaveLength(100);
    expect(result.failures.every((f) => f.path.startsWith("link"))).toBe(true);
    expect(result.extra).toEqual(["link100"]);
    expect(readFileSync(join(to, "kept.txt"), "utf8")).toBe("kept");
  } finally {
    out.remove();
  }
});
