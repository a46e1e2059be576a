// A file renamed over by another of the same size and mtime while capture reads it (cp -p, tar x, an application's
// write-to-temp-then-rename that keeps the mtime): the stat after the read matched the one before in size and mtime,
// so the old file's bytes were journaled under the new file's stat, and no later capture read it again (its stat is
// as indexed). The rename is made by hand, right after the read.

import { renameSync, utimesSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { capture } from "../../agent/capture.ts";
import type * as SmallFileRead from "../../agent/small-file-read.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

/** Runs once after the next small file's read. */
let afterRead: (() => void) | undefined;

vi.mock("../../agent/small-file-read.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof SmallFileRead>();
  const readSmallFile = async (...args: Parameters<typeof actual.readSmallFile>) => {
    const bytes = await actual.readSmallFile(...args);
    const after = afterRead;
    afterRead = undefined;
    after?.();
    return bytes;
  };
  return { ...actual, readSmallFile };
});

let h: Harness;
afterEach(async () => {
  afterRead = undefined;
  await h.close();
});

it("reads a file again that was renamed over during its read by one of the same size and mtime", async () => {
  h = agentHarness("app");
  const file = join(h.src.path, "config.json");
  const temp = join(h.src.path, ".config.json.tmp");
  const when = new Date("2026-01-02T03:04:05Z");
  writeFileSync(file, "old contents");
  utimesSync(file, when, when);
  writeFileSync(temp, "new contents");
  utimesSync(temp, when, when);
  afterRead = () => renameSync(temp, file);
  const { changes } = await capture(h.journal, { name: "app", root: h.src.path, exclude: [] }, "config.json");
  const put = changes.find((change) => change.op === "put");
  expect(put?.op === "put" ? put.sha256 : undefined).toBe(createHash("sha256").update("new contents").digest("hex"));
});
