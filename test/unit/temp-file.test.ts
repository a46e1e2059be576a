// The restore's new files (agent/temp-file.ts): created exclusively and
// private, and each call reaches the file through its descriptor.

import { constants, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openNewFile } from "../../agent/temp-file.ts";
import { tempDir } from "../support/tree.ts";

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

function scratch(): string {
  const dir = tempDir("tidemark-tempfile-");
  dirs.push(dir);
  return dir.path;
}

/** The open flags of this process's descriptor of path (Linux: /proc/self/fdinfo). */
function openFlags(path: string): number {
  const fd = readdirSync("/proc/self/fd").find((name) => {
    try {
      return readlinkSync(`/proc/self/fd/${name}`) === path;
    } catch {
      return false;
    }
  });
  if (fd === undefined) throw new Error(`${path} is not open`);
  return Number.parseInt(/flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1] ?? "", 8);
}

describe("openNewFile", () => {
  it.runIf(process.platform === "linux")("opens O_DSYNC only when asked for durable writes (a small file's write is then its sync)", async () => {
    const dir = scratch();
    for (const durableWrites of [true, false]) {
      const path = join(dir, `f-${durableWrites}`);
      const file = await openNewFile(path, 0o644, { durableWrites });
      try {
        expect(file.durableWrites).toBe(durableWrites);
        expect([durableWrites, (openFlags(path) & constants.O_DSYNC) !== 0]).toEqual([durableWrites, durableWrites]);
        expect(await file.writev([Buffer.from("bytes")], 0)).toEqual({ bytesWritten: 5 });
      } finally {
        await file.close();
      }
      expect(readFileSync(path, "utf8")).toBe("bytes");
    }
    // Exclusive as without it: a clash fails, never overwrites.
    await expect(openNewFile(join(dir, "f-true"), 0o644, { durableWrites: true })).rejects.toMatchObject({ code: "EEXIST" });
  });

  it("never opens a file that exists (EEXIST), and leaves it as it was", async () => {
    const path = join(scratch(), "taken");
    writeFileSync(path, "kept");
    await expect(openNewFile(path)).rejects.toMatchObject({ code: "EEXIST" });
    expect(readFileSync(path, "utf8")).toBe("kept");
  });

  it("creates a file only its owner can read, then writes, truncates, syncs, sizes, sets mode and times through the descriptor", async () => {
    const path = join(scratch(), "new");
    const file = await openNewFile(path);
    try {
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(await file.writev([Buffer.from("hello "), Buffer.from("world")], 0)).toEqual({ bytesWritten: 11 });
      expect(await file.write(Buffer.from("xxWOxx"), 2, 2, 6)).toEqual({ bytesWritten: 2 });
      expect(await file.stat()).toEqual({ size: 11, mode: 0o600 });
      await file.truncate(5);
      expect((await file.stat()).size).toBe(5);
      await file.sync();
      // Mode 000 set through the descriptor: later calls on it still work (permissions are checked at open).
      await file.chmod(0o000);
      await file.utimes(1_000_000, 1_000_000.25);
      expect(await file.stat()).toEqual({ size: 5, mode: 0o000 });
    } finally {
      await file.close();
    }
    const st = statSync(path, { bigint: true });
    expect(Number(st.mode & 0o7777n)).toBe(0o000);
    expect(st.mtimeNs).toBe(1_000_000_250_000_000n);
  });

  it("given a mode, creates the file with its read and execute bits and its owner's write only: never others' write, set-id or sticky", async () => {
    const umask = 0o022;
    const old = process.umask(umask);
    try {
      const dir = scratch();
      const cases: [number, number][] = [
        [0o644, 0o644],
        [0o755, 0o755],
        [0o400, 0o600],
        [0o000, 0o200],
        [0o666, 0o644],
        [0o777, 0o755],
        [0o4755, 0o755],
        [0o1644, 0o644],
      ];
      for (const [mode, created] of cases) {
        const path = join(dir, mode.toString(8));
        const file = await openNewFile(path, mode);
        try {
          expect([mode.toString(8), (await file.stat()).mode.toString(8)]).toEqual([mode.toString(8), created.toString(8)]);
          // Written whatever the mode: the creating open grants it.
          expect(await file.writev([Buffer.from("x")], 0)).toEqual({ bytesWritten: 1 });
        } finally {
          await file.close();
        }
      }
    } finally {
      process.umask(old);
    }
  });
});
