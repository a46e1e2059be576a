// A folder the recovery point holds as writable by its group or by others (0777, 1777, 0775) is not writable by
// them while the restore fills it: anyone else could otherwise swap a subfolder the restore made (and checked) for a
// symlink, or put names where the restore writes, before a single file in it is proven. Its full mode comes at the
// end, once everything in it is written (finishDir).

import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { tempDir } from "../support/tree.ts";

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

const T = "1000000000000";
const body = Buffer.from("content");
const sha256 = createHash("sha256").update(body).digest("hex");

describe("restore's folder modes while it fills them", () => {
  it("gives no write bit of group or others to a folder (0777, 1777, 2775, 0775) until its files are written, then its exact mode", async () => {
    const dir = tempDir("tidemark-folder-mode-");
    dirs.push(dir);
    const to = join(dir.path, "out");
    const modes = [0o777, 0o1777, 0o2775, 0o775, 0o700];
    const entries: RecoveryEntry[] = [];
    for (const mode of modes) {
      const name = `d${mode.toString(8)}`;
      entries.push({ path: name, kind: "dir", size: 0, mode, mtimeNs: T }, { path: `${name}/sub`, kind: "dir", size: 0, mode, mtimeNs: T });
      entries.push({ path: `${name}/sub/f`, kind: "file", size: body.length, mode: 0o644, mtimeNs: T, sha256 });
    }
    // What each folder's mode was while a file in it was read (its content unproven).
    const seen: string[] = [];
    const report = await writeRecoveryPoint(
      {
        entries,
        content: async (entry) => {
          const folder = entry.path.split("/")[0] ?? "";
          for (const path of [folder, `${folder}/sub`]) seen.push(`${path} ${(statSync(join(to, path)).mode & 0o7777).toString(8)}`);
          return body;
        },
      },
      to,
    );
    expect(report.failures).toEqual([]);
    expect(seen.sort()).toEqual(
      modes.flatMap((mode) => {
        // While filled: the owner's rwx, never group's or others' write; set-gid stays (new names take the folder's group).
        const filling = ((mode & ~0o1022) | 0o700).toString(8);
        const name = `d${mode.toString(8)}`;
        return [`${name} ${filling}`, `${name}/sub ${filling}`];
      }).sort(),
    );
    for (const mode of modes) {
      const name = `d${mode.toString(8)}`;
      expect([name, (statSync(join(to, name)).mode & 0o7777).toString(8), (statSync(join(to, `${name}/sub`)).mode & 0o7777).toString(8)]).toEqual([name, mode.toString(8), mode.toString(8)]);
    }
  });
});
