// `tidemark run` on a corrupt journal, as a supervisor would start it: it
// exits non-zero naming the file and the remedy, every time it is restarted,
// whether the damage is found when the journal opens or by the first scan.

import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

/** A set with a journal whose pages [from, to) are overwritten; returns the config file and the journal's path. */
function damagedSetup(name: string, from: number, to: number): { config: string; file: string } {
  const dir = join(work.path, name);
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(join(dir, "src", "a.txt"), "a file");
  const config = cloud.writeConfig(dir, [{ name, path: "src" }]);
  const journal = Journal.open(join(dir, "state"));
  journal.append(
    name,
    Array.from({ length: 300 }, (_, i) => ({ op: "mkdir" as const, path: `folder-${i}/with/a/long/enough/name`, mode: 0o755, mtimeNs: "1" })),
  );
  journal.close();
  const file = join(dir, "state", "journal.db");
  const fd = openSync(file, "r+");
  for (let page = from; page < to; page++) writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, page * 4096);
  closeSync(fd);
  return { config, file };
}

it.each([
  ["when it opens", "header", 0, 1],
  ["by the first scan", "index", 2, 4],
])("exits non-zero naming the journal and the remedy, when the damage is found %s", async (_when, name, from, to) => {
  const { config, file } = damagedSetup(name, from, to);
  for (let start = 0; start < 2; start++) {
    const out = await tidemark(["run", "--config", config]);
    expect(out.code).toBe(1);
    expect(out.stderr).toContain(`the journal ${file} is corrupt`);
    expect(out.stderr).toContain(`mv ${file} ${file}.corrupt`);
  }
});
