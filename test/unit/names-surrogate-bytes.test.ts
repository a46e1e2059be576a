// A name on a Linux disk is bytes. One holding the bytes a lone UTF-16
// surrogate would have in WTF-8/CESU-8 (ED A0 80 for U+D800, ED B0 80 for
// U+DC00) is not UTF-8: Node reads it back with U+FFFD in place of each such
// byte, never as a lone surrogate. The agent skips it like any name that is not
// UTF-8 (named in status, nothing journaled under it), and were a lone
// surrogate ever handed to it, the set path rules refuse that too
// (test/unit/applier-lone-surrogate.test.ts is the applier's side).

import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LONE_SURROGATE } from "../../contract/paths.ts";
import { Journal } from "../../agent/journal.ts";
import { barrierScan } from "../../agent/scan.ts";
import { findProblems } from "../../agent/set-health.ts";
import type { SetSpec } from "../../agent/set-spec.ts";
import { NOT_UTF8, skippedNow, unreplicableName } from "../../agent/skipped-names.ts";
import { tempDir } from "../support/tree.ts";

describe("names holding a lone surrogate's bytes", () => {
  let dir: ReturnType<typeof tempDir>;
  let src: string;
  let journal: Journal;
  let spec: SetSpec;
  beforeEach(() => {
    dir = tempDir("tidemark-surrogate-names-");
    src = join(dir.path, "src");
    journal = Journal.open(join(dir.path, "state"));
    spec = { name: "www", root: src, exclude: [] };
    mkdirSync(src);
  });
  afterEach(() => {
    journal.close();
    dir.remove();
  });

  it("read back with U+FFFD (not a lone surrogate): skipped as not UTF-8, named in status, and nothing is journaled under them", async () => {
    writeFileSync(join(src, "good.txt"), "ok");
    writeFileSync(Buffer.concat([Buffer.from(join(src, "high-")), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(".txt")]), "high");
    writeFileSync(Buffer.concat([Buffer.from(join(src, "low-")), Buffer.from([0xed, 0xb0, 0x80])]), "low");
    const names = readdirSync(src).sort();
    expect(names).toEqual(["good.txt", "high-\uFFFD\uFFFD\uFFFD.txt", "low-\uFFFD\uFFFD\uFFFD"]);
    expect(names.every((name) => name.isWellFormed())).toBe(true);

    const report = await barrierScan(journal, spec);
    expect(report.skipped).toEqual(expect.arrayContaining([
      { path: "high-\uFFFD\uFFFD\uFFFD.txt", reason: NOT_UTF8 },
      { path: "low-\uFFFD\uFFFD\uFFFD", reason: NOT_UTF8 },
    ]));
    const journaled = journal.pending("www", 0, 1000).map((record) => ("path" in record ? record.path : ""));
    expect(journaled).toEqual(["good.txt"]);

    const skipped = skippedNow(journal.skippedNames, "www", src).map(({ path, reason }) => ({ path, reason }));
    const counters = { nextSeq: 1, sentSeq: 0, backlogRecords: 0, backlogBytes: 0, messagesSent: 0, bytesSent: 0, lastSendError: null, overflowed: false, watcherProblem: null };
    const messages = findProblems({ set: "www", counters, generation: undefined, skipped, target: { error: "not asked" }, now: new Date() })
      .filter((problem) => problem.kind === "skipped-path")
      .map((problem) => problem.message);
    expect(messages).toContain(`not replicated: high-\uFFFD\uFFFD\uFFFD.txt: ${NOT_UTF8} (rename it to replicate it)`);
    expect(messages).toContain(`not replicated: low-\uFFFD\uFFFD\uFFFD: ${NOT_UTF8} (rename it to replicate it)`);
  });

  it("a lone surrogate handed to the agent as a name is refused by the set path rules, with that reason", () => {
    expect(unreplicableName(src, "a/\ud800")).toBe(LONE_SURROGATE);
    expect(unreplicableName(src, "\udc00.txt")).toBe(LONE_SURROGATE);
    expect(unreplicableName(src, "ok/\u{1f600}.txt")).toBeUndefined();
  });
});
