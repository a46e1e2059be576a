// With no config in the current folder, `tidemark task` (no set), `restore
// SET`, `prune SET`, `drill`, `verify`, `mirror`, `snapshots`, `timeline` and
// `tasks` said "no config file" (exit 1) instead of the
// usage error (exit 2) they give with a config; `prune SET` without --keep
// said `--keep must be a whole number of snapshots, got ""`, and `--keep ""`
// (a script's unset variable) was read as 0, which deletes every snapshot.
// The arguments are now checked before the config is loaded.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => dir.remove());

/** The CLI in a folder with no config (and none named by the environment). */
const bare = (args: string[]) => tidemark(args, { cwd: dir.path, env: { TIDEMARK_CONFIG: "" } });

it.each([
  [["task"], /^tidemark: name the set to insert a task into\n/],
  [["task", "db", "--action", "nope"], /--action must be one of /],
  [["task", "db", "--wait-timeout", "5"], /--wait-timeout goes with --wait/],
  [["restore", "tree"], /name the snapshot with --snapshot ID \(see `tidemark snapshots tree`\), or a moment with --at TIME/],
  [["restore", "tree", "--snapshot", "latest"], /name the folder to restore into with --to DIR/],
  [["restore"], /name the set to restore\n/],
  [["prune", "tree"], /--keep N is required: the number of snapshots to keep/],
  [["prune", "tree", "--keep", "x"], /--keep must be a whole number of snapshots, got "x"/],
  [["drill"], /^tidemark: name the set to drill\n/],
  [["verify"], /^tidemark: name the set to verify\n/],
  [["mirror", "--mode", "diff"], /^tidemark: name the set to mirror\n/],
  [["snapshots"], /^tidemark: name the set to list the snapshots of\n/],
  [["timeline"], /^tidemark: name the set to show the timeline of\n/],
  [["tasks"], /^tidemark: name the set to list the tasks of\n/],
])("without a config, %j is a usage error (exit 2), not 'no config file'", async (args, message) => {
  const out = await bare(args);
  expect(out.stderr).toMatch(message);
  expect(out.stderr).not.toContain("no config file");
  expect(out.code).toBe(2);
});

it("still says there is no config once the arguments are right", async () => {
  const out = await bare(["prune", "tree", "--keep", "3"]);
  expect(out.stderr).toContain(`no config file at ${join(dir.path, "tidemark.config.json")}`);
  expect(out.code).toBe(1);
});

it("lists the config's sets when one is there, and refuses an empty --keep instead of reading it as 0", async () => {
  const config = join(dir.path, "tidemark.config.json");
  writeFileSync(config, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "agent", sets: [{ name: "docs", path: join(dir.path, "docs") }] }));
  const unnamed = await tidemark(["prune", "--keep", "3", "--config", config]);
  expect(unnamed.stderr).toContain("name the set to prune (sets: docs)");
  expect(unnamed.code).toBe(2);
  const empty = await tidemark(["prune", "docs", "--keep", "", "--config", config]);
  expect(empty.stderr).toContain('--keep must be a whole number of snapshots, got ""');
  expect(empty.code).toBe(2);
});
