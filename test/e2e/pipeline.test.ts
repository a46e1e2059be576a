// End to end on the emulator: agent (watching) -> SQS FIFO -> poller -> applier -> S3.

import { chmodSync, closeSync, mkdirSync, openSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

describe("pipeline on the emulator", () => {
  let cloud: TestCloud;
  let work: ReturnType<typeof tempDir>;
  let agent: RunningAgent;
  let src: string;

  const converged = () =>
    eventually(async () => {
      expect(await pictureOfTarget(cloud.store, "tree", { dirMtimes: true })).toEqual(await pictureOfSource(src, { dirMtimes: true }));
    });

  beforeAll(async () => {
    cloud = await startTestCloud();
    work = tempDir();
    src = join(work.path, "src");
    // 1,000 files in 100 nested folders, with modes, mtimes, symlinks and empty folders.
    for (let a = 0; a < 10; a++) {
      for (let b = 0; b < 10; b++) {
        const dir = join(src, `a${a}`, `b${b}`);
        mkdirSync(dir, { recursive: true });
        for (let f = 0; f < 10; f++) {
          const file = join(dir, `f${f}.dat`);
          writeFileSync(file, f === 0 && b === 0 ? randomBytes(300 * 1024) : `file ${a}/${b}/${f}\n`.repeat(f + 1));
          if (f === 1) chmodSync(file, 0o600);
        }
      }
    }
    // Larger than one request to the emulator: staged in parts.
    writeFileSync(join(src, "a0/huge.bin"), randomBytes(20 * 1024 * 1024));
    mkdirSync(join(src, "empty/nested-empty"), { recursive: true });
    // Names with what paths, JSON and the queue treat specially (characters beyond U+FFFF included).
    mkdirSync(join(src, "names ünï 日本 😀"));
    writeFileSync(join(src, "names ünï 日本 😀", "a +%?#&=;'\"!()*~ 𝄞.txt"), "hostile name");
    symlinkSync("a0/b0/f1.dat", join(src, "link-to-file"));
    symlinkSync("a1", join(src, "link-to-dir"));
    utimesSync(join(src, "a0/b0/f2.dat"), new Date("2010-01-01T00:00:00Z"), new Date("2010-01-01T00:00:00Z"));
    const config = loadConfig(cloud.writeConfig(work.path, [{ name: "tree", path: "src" }]));
    agent = await startAgent(config, silentLogger);
  });

  afterAll(async () => {
    await agent?.stop();
    await cloud?.stop();
    work?.remove();
  });

  it("mirrors the initial tree byte for byte", async () => {
    await converged();
    expect(Object.keys(await pictureOfTarget(cloud.store, "tree")).filter((p) => p.endsWith(".dat"))).toHaveLength(1000);
  });

  it("follows modifications, deletions and renames as they happen", async () => {
    for (let a = 0; a < 10; a++) {
      writeFileSync(join(src, `a${a}/b1/f3.dat`), `modified ${a}`);
      writeFileSync(join(src, `a${a}/b2/f4.dat`), "appended", { flag: "a" });
      rmSync(join(src, `a${a}/b3/f5.dat`));
      renameSync(join(src, `a${a}/b4/f6.dat`), join(src, `a${a}/b4/f6-renamed.dat`));
      chmodSync(join(src, `a${a}/b5/f7.dat`), 0o640);
    }
    // One byte inside a file larger than one request: a delta, rebuilt on the target and uploaded in parts.
    const huge = openSync(join(src, "a0/huge.bin"), "r+");
    writeSync(huge, Buffer.from([7]), 0, 1, 5 * 1024 * 1024);
    closeSync(huge);
    renameSync(join(src, "a9/b9"), join(src, "a9/b9-moved"));
    rmSync(join(src, "a8"), { recursive: true });
    mkdirSync(join(src, "new-empty"));
    symlinkSync("a9/b9-moved/f0.dat", join(src, "new-link"));
    await converged();
  });

  it("keeps the applied seqs contiguous and each applied once", () => {
    const seqs = cloud.applied.get("tree") ?? [];
    expect(seqs.length).toBeGreaterThan(1000);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  });
});
