// Names: entries whose names the target cannot carry, and sockets, FIFOs and
// devices, are listed as skipped (journal, status) until deleted, renamed or
// excluded; control characters in names and
// labels are escaped in what the CLI prints.

import { execFileSync } from "node:child_process";
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { escapeControl } from "../../agent/format.ts";
import { Journal } from "../../agent/journal.ts";
import { barrierScan } from "../../agent/scan.ts";
import { findProblems } from "../../agent/set-health.ts";
import type { SetSpec } from "../../agent/set-spec.ts";
import { skippedNow } from "../../agent/skipped-names.ts";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

describe("escapeControl", () => {
  it("makes control characters, bidi overrides and backslashes visible, and leaves other text alone", () => {
    expect(escapeControl("a\nb\tc\rd")).toBe("a\\nb\\tc\\rd");
    expect(escapeControl("x\x1b[2Jy\x7f\u0085")).toBe("x\\x1b[2Jy\\x7f\\x85");
    expect(escapeControl("invoice\u202efdp.exe")).toBe("invoice\\u202efdp.exe");
    expect(escapeControl("back\\slash")).toBe("back\\\\slash");
    expect(escapeControl("日本語 é 🌊 plain")).toBe("日本語 é 🌊 plain");
  });
});

describe("skipped names", () => {
  let dir: ReturnType<typeof tempDir>;
  let src: string;
  let journal: Journal;
  let spec: SetSpec;
  beforeEach(() => {
    dir = tempDir("tidemark-names-");
    src = join(dir.path, "src");
    mkdirSync(join(src, "docs"), { recursive: true });
    writeFileSync(join(src, "good.txt"), "ok");
    writeFileSync(join(src, "bad\nname.txt"), "newline");
    writeFileSync(join(src, "docs", "back\\slash.txt"), "backslash");
    journal = Journal.open(join(dir.path, "state"));
    spec = { name: "www", root: src, exclude: [] };
  });
  afterEach(() => {
    journal.close();
    dir.remove();
  });

  const paths = () => journal.skippedNames.list("www").map((s) => [s.path, s.reason]);

  it("records what a scan skipped, with why, and forgets an entry once it is renamed to a name that works or deleted", async () => {
    await barrierScan(journal, spec);
    expect(paths()).toEqual([
      ["bad\nname.txt", "path contains a control character"],
      ["docs/back\\slash.txt", "path contains a backslash"],
    ]);
    renameSync(join(src, "bad\nname.txt"), join(src, "bad name.txt"));
    // Status no longer lists it before the next scan...
    expect(skippedNow(journal.skippedNames, "www", src).map((s) => s.path)).toEqual(["docs/back\\slash.txt"]);
    // ...and the next scan replicates it under its new name and drops it from the list.
    const report = await barrierScan(journal, spec);
    expect(report.changes).toBe(1);
    expect(paths()).toEqual([["docs/back\\slash.txt", "path contains a backslash"]]);
    rmSync(join(src, "docs", "back\\slash.txt"));
    await barrierScan(journal, spec, "docs");
    expect(paths()).toEqual([]);
  });

  it("skips a name that is not UTF-8, which no scan could read back, instead of passing over it silently", async () => {
    const bad = Buffer.concat([Buffer.from(join(src, "latin1-")), Buffer.from([0xe9]), Buffer.from(".txt")]);
    writeFileSync(bad, "bytes");
    const report = await barrierScan(journal, spec);
    expect(report.skipped).toContainEqual({ path: "latin1-\uFFFD.txt", reason: "name is not valid UTF-8 (S3 keys are UTF-8)" });
    expect(skippedNow(journal.skippedNames, "www", src).map((s) => s.path)).toContain("latin1-\uFFFD.txt");
    rmSync(bad);
    await barrierScan(journal, spec);
    expect(paths().map(([p]) => p)).not.toContain("latin1-\uFFFD.txt");
  });

  it("names sockets and FIFOs (no content to replicate) with the remedy, until they are excluded", async () => {
    execFileSync("mkfifo", [join(src, "docs", "pipe")]);
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(src, "app.sock"), resolve));
    try {
      await barrierScan(journal, spec);
      expect(paths()).toEqual([
        ["app.sock", "a socket: no content to replicate"],
        ["bad\nname.txt", "path contains a control character"],
        ["docs/back\\slash.txt", "path contains a backslash"],
        ["docs/pipe", "a FIFO: no content to replicate"],
      ]);
      const counters = { nextSeq: 1, sentSeq: 0, backlogRecords: 0, backlogBytes: 0, messagesSent: 0, bytesSent: 0, lastSendError: null, overflowed: false, watcherProblem: null };
      // As `tidemark status` passes them: a name problem has no "since" (it lasts until the entry changes).
      const skipped = skippedNow(journal.skippedNames, "www", src).map(({ path, reason }) => ({ path, reason }));
      const messages = findProblems({ set: "www", counters, generation: undefined, skipped, target: { error: "not asked" }, now: new Date() })
        .filter((p) => p.kind === "skipped-path")
        .map((p) => p.message);
      expect(messages).toContain("not replicated: app.sock: a socket: no content to replicate (exclude it in the set's config to accept that)");
      expect(messages).toContain("not replicated: bad\nname.txt: path contains a control character (rename it to replicate it)");
      // Excluded: accepted as not replicated, and no longer named.
      await barrierScan(journal, { ...spec, exclude: ["*.sock", "docs/pipe"] });
      expect(paths().map(([p]) => p)).toEqual(["bad\nname.txt", "docs/back\\slash.txt"]);
    } finally {
      server.close();
    }
  });

  it("keeps entries below other folders when a subfolder is scanned, and keeps all when a scan stops early", async () => {
    await barrierScan(journal, spec);
    await barrierScan(journal, spec, "docs");
    expect(paths().map(([p]) => p)).toEqual(["bad\nname.txt", "docs/back\\slash.txt"]);
    rmSync(join(src, "bad\nname.txt"));
    await barrierScan(journal, spec, { shouldStop: () => true });
    expect(paths().map(([p]) => p)).toEqual(["bad\nname.txt", "docs/back\\slash.txt"]);
  });

  it("are listed by `tidemark status`, escaped in its text and as they are in --json", async () => {
    await barrierScan(journal, spec);
    journal.close();
    const file = join(dir.path, "tidemark.config.json");
    writeFileSync(file, JSON.stringify({ endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "www", path: "src" }] }));
    const json = await tidemark(["status", "--json", "--config", file]);
    const report = JSON.parse(json.stdout) as { sets: { skipped: { path: string; reason: string }[] }[] };
    expect(report.sets[0]?.skipped).toEqual([
      { path: "bad\nname.txt", reason: "path contains a control character" },
      { path: "docs/back\\slash.txt", reason: "path contains a backslash" },
    ]);
    const text = await tidemark(["status", "--config", file]);
    expect(text.stdout).toContain("www: not replicated: bad\\nname.txt: path contains a control character (rename it to replicate it)\n");
    expect(text.stdout).toContain("www: not replicated: docs/back\\\\slash.txt: path contains a backslash");
    journal = Journal.open(join(dir.path, "state"));
  });
});
