// A snapshot of a tree past the store's listing pages, on the local cloud:
// 5,000 files whose names differ only in case, carry accents, CJK, emoji and
// characters either side of U+FFFF, and sit up to nine folders deep. The
// emulator used to page such a listing out of order (keys skipped and
// repeated at page boundaries); the snapshot must hold every file once and
// restore byte for byte.

import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { readSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "names";
const FILES = 5_000;
const FOLDERS = ["Lib", "lib", "LIB", "ünï", "Ünï", "日本語", "😀", "\ufffd", "\ue000x", "a-b", "a_b", "Z", "z", "_"];
const STEMS = ["README", "readme", "ReadMe", "index.d.ts", "Index.d.ts", "é", "E", "ß", "ss", "𝔘nicode", "data~1", "Data~1"];

let cloud: TestCloud;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");
let config: string;

/** The tree: FILES files of a few bytes each, and a handful of symlinks. */
function writeTree(): void {
  for (let i = 0; i < FILES; i++) {
    const depth = i % 10;
    const folders = Array.from({ length: depth }, (_, d) => FOLDERS[(i + d * 5) % FOLDERS.length] ?? "f");
    const dir = join(src, ...folders);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${STEMS[i % STEMS.length] ?? "s"}-${i % 37}-${Math.floor(i / 37)}`), `file ${i} ${"x".repeat(i % 50)}\n`);
  }
  symlinkSync("Lib/README-0-0", join(src, "Link to readme"));
  symlinkSync("../outside", join(src, "lib", "link-out"));
}

beforeAll(async () => {
  cloud = await startTestCloud();
  writeTree();
  config = cloud.writeConfig(work.path, [{ name: SET, path: "src" }]);
  agent = await startAgent(loadConfig(config), silentLogger);
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

describe("a tree of 5,000 mixed-case, unicode and deep names", () => {
  it("is mirrored in full, and its snapshot holds every file once and restores byte for byte", async () => {
    const source = await pictureOfSource(src, { microseconds: true, dirMtimes: true });
    expect(Object.values(source).filter((line) => line.startsWith("file ")).length).toBe(FILES);
    // The marker follows everything the barrier scan found: once it ran, the mirror holds the whole tree.
    const task = await tidemark(["task", SET, "--label", "names", "--wait", "--json", "--config", config]);
    expect(task.code, task.stderr).toBe(0);
    expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src));
    const result = (JSON.parse(task.stdout) as { result: TaskResult }).result;
    expect(result.status).toBe("succeeded");
    const summary = await readSnapshot(cloud.store, SET, String(result.outputs.snapshotId));
    expect(summary).toMatchObject({ files: FILES, symlinks: 2 });

    const to = join(work.path, "restored");
    const restore = await tidemark(["restore", SET, "--snapshot", summary.id, "--to", to, "--config", config]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await pictureOfSource(to, { microseconds: true, dirMtimes: true })).toEqual(source);
  }, 240_000);
});
