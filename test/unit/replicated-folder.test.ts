// `restore --to` inside a replicated set's source folder: the restored copy
// would be replicated back into the set as new files (the target holding the
// set twice). Refused (usage error, naming the set) unless --force; restoring
// a set over its own folder, or into an excluded folder, or outside every
// set, is not refused for it. Through the CLI against a target nothing listens
// on: what passes the check fails later as unreachable (exit 1), not 2.

import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { realPathOf } from "../../agent/config.ts";
import { replicatingSet } from "../../agent/replicated-folder.ts";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
let config: string;
beforeAll(() => {
  dir = tempDir();
  mkdirSync(join(dir.path, "www"));
  mkdirSync(join(dir.path, "db"));
  config = join(dir.path, "tidemark.config.json");
  writeFileSync(
    config,
    JSON.stringify({
      endpoint: "http://127.0.0.1:9",
      queueUrl: "http://127.0.0.1:9/000000000000/q.fifo",
      bucket: "bucket",
      stateDir: "s",
      sets: [
        { name: "www", path: "www", exclude: ["tmp", "cache/*"] },
        { name: "db", path: "db" },
      ],
    }),
  );
});
afterAll(() => dir.remove());

it.each([
  ["www/restored", "www"],
  ["www/a/b/restored", "www"],
  ["db", "db"],
  ["db/copy", "db"],
])("refuses --to %s without --force, naming set %s", async (to, set) => {
  const out = await tidemark(["restore", "www", "--snapshot", "latest", "--to", to, "--config", config], { cwd: dir.path });
  expect(out.code).toBe(2);
  expect(out.stderr).toContain(`--to ${to} is inside the folder of set ${set} (${join(dir.path, set)}), which the agent replicates`);
  expect(out.stderr).toContain("give --force to restore there all the same");
});

it.each([["www/restored"], ["www"], ["restored"], ["www/tmp/restored"], ["www/cache/x"]])("lets --to %s through (with --force, in place without it, outside, excluded)", async (to) => {
  const force = to === "www/restored" ? ["--force"] : [];
  const out = await tidemark(["restore", "www", "--snapshot", "latest", "--to", to, ...force, "--config", config], { cwd: dir.path });
  expect(out.stderr).toMatch(/cannot reach the bucket/);
  expect(out.code).toBe(1);
});

it("warns, naming the set, when --force restores inside a set's folder", async () => {
  const out = await tidemark(["restore", "www", "--snapshot", "latest", "--to", "www/restored", "--force", "--config", config], { cwd: dir.path });
  expect(out.stderr).toContain(`warning: --to www/restored is inside the folder of set www (${join(dir.path, "www")}), which the agent replicates: restoring there all the same (--force)`);
  expect(out.code).toBe(1);
});

it.each([["."], ["db"]])("refuses --delete into --to %s, which holds another set's folder, even with --force", async (to) => {
  const out = await tidemark(["restore", "www", "--snapshot", "latest", "--to", to, "--force", "--delete", "--config", config], { cwd: dir.path });
  expect(out.code).toBe(2);
  expect(out.stderr).toContain(`holds the folder of set db (${join(dir.path, "db")}): --delete would remove its files as not in the snapshot`);
});

it("lets --delete into the set's own folder through (its own folder is not another set's)", async () => {
  const out = await tidemark(["restore", "db", "--snapshot", "latest", "--to", "db", "--force", "--delete", "--config", config], { cwd: dir.path });
  expect(out.stderr).toMatch(/cannot reach the bucket/);
  expect(out.code).toBe(1);
});

it("sees through a link to the set's folder", () => {
  const link = join(dir.path, "link-to-www");
  symlinkSync(join(dir.path, "www"), link);
  const sets = [{ name: "www", root: join(dir.path, "www"), exclude: [] }];
  expect(replicatingSet(sets, join(link, "restored", "deeper"), "db", realPathOf)?.name).toBe("www");
  expect(replicatingSet(sets, join(dir.path, "www-other"), "db", realPathOf)).toBeUndefined();
});

it.each([
  ["www/drill", "www"],
  ["www", "www"],
  ["db/drill", "db"],
])("refuses drill --to %s, inside set %s (a drill has no --force)", async (to, set) => {
  const out = await tidemark(["drill", "www", "--to", to, "--config", config], { cwd: dir.path });
  expect(out.code).toBe(2);
  expect(out.stderr).toContain(`--to ${to} is inside the folder of set ${set} (${join(dir.path, set)}), which the agent replicates: the drill's copy would be sent back`);
});

it("lets drill --to outside every set through (it fails later: nothing listens)", async () => {
  const out = await tidemark(["drill", "www", "--to", "drilled", "--config", config], { cwd: dir.path });
  expect(out.code).not.toBe(2);
  expect(out.stderr).not.toContain("which the agent replicates");
});
