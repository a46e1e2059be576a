// Symlink targets kept exactly: a target too long for S3's 2 KB of object
// metadata once URI-encoded lives in its object's body (a flag in the
// metadata), read back by snapshots and verification and proved against its
// hash; a rename of an object written before that keeps within the limit; a
// target that is not UTF-8 is named as not replicated rather than altered; a
// lone surrogate in a message's target is refused.

import { createHash } from "node:crypto";
import { mkdirSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { LINK_TARGET_NOT_UTF8 } from "../../agent/link-target.ts";
import { barrierScan } from "../../agent/scan.ts";
import { findProblems } from "../../agent/set-health.ts";
import type { SetSpec } from "../../agent/set-spec.ts";
import { skippedNow } from "../../agent/skipped-names.ts";
import { dataKey, decodeMeta, encodeMeta, META } from "../../contract/layout.ts";
import { LINK_METADATA_BUDGET_BYTES, USER_METADATA_LIMIT_BYTES, userMetadataBytes } from "../../contract/link-meta.ts";
import { BadMessageError, parseMessage, type VerifyRecord, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { verifyTarget } from "../../lambdas/applier/verify.ts";
import { symlinkTarget } from "../../lambdas/link-targets.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { liveManifest } from "../../lambdas/tasks/snapshots.ts";
import { messageBody, signedIncoming, TEST_KEY } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "links";
/** Linux's longest target (PATH_MAX less the NUL), every byte escaped three times over once encoded. */
const LONGEST = "%".repeat(4_095);
/** 2-, 3- and 4-byte characters and escaped ASCII, 3,600 bytes of UTF-8. */
const WIDE = "日本語/😀 %é".repeat(200);
const symlinkMeta = (target: string) => encodeMeta({ kind: "symlink", mode: 0o777, mtimeNs: "1700000000000000000", sha256: "0".repeat(64), linkTarget: target });

describe("a symlink object's metadata", () => {
  it("holds the encoded target while it fits the budget, and only a flag past it, never near S3's limit", () => {
    const fits = "a".repeat(LINK_METADATA_BUDGET_BYTES);
    expect(decodeMeta(symlinkMeta(fits))).toMatchObject({ linkTarget: fits });
    expect(decodeMeta(symlinkMeta(fits))?.linkInBody).toBeUndefined();
    for (const target of [`${fits}a`, LONGEST, WIDE, "é".repeat(200)]) {
      const meta = symlinkMeta(target);
      expect(meta[META.linkTarget]).toBeUndefined();
      expect(meta[META.linkInBody]).toBe("1");
      expect(decodeMeta(meta)).toMatchObject({ kind: "symlink", linkInBody: true });
      expect(decodeMeta(meta)?.linkTarget).toBeUndefined();
    }
    expect(userMetadataBytes(symlinkMeta(fits))).toBeLessThan(USER_METADATA_LIMIT_BYTES * 0.7);
  });
});

describe("symlinks on the target", () => {
  let store: MemoryStore;
  let applier: Applier;
  let n = 0;
  const deliver = (records: WireRecord[]) => applier.applyMessage(signedIncoming(`m${++n}`, SET, messageBody(SET, records), TEST_KEY));
  const metaOf = async (path: string) => decodeMeta((await store.head(dataKey(SET, path)))?.meta);
  beforeEach(() => {
    store = new MemoryStore();
    applier = new Applier({ store, log: () => {} });
  });

  const verifyRecord: VerifyRecord = { seq: 9, op: "verify", id: "v1", deep: false, orphans: "report", size: 0, sha256: "0".repeat(64), content: { kind: "staged" } };
  const verify = (entries: { path: string; link: string }[]) =>
    verifyTarget(
      store,
      SET,
      verifyRecord,
      entries.map(({ path, link }) => ({ path, kind: "symlink", size: 0, mode: 0o777, mtimeNs: "1", link })),
      new Date(),
    );

  it("keeps a long target in the body: snapshots and verification read it exactly, and name a body that is not its hash's", async () => {
    expect(
      await deliver([
        { seq: 1, op: "symlink", path: "longest", target: LONGEST, mtimeNs: "1" },
        { seq: 2, op: "symlink", path: "wide", target: WIDE, mtimeNs: "1" },
        { seq: 3, op: "symlink", path: "short", target: "a b/é", mtimeNs: "1" },
      ]),
    ).toMatchObject({ kind: "applied" });
    expect(await metaOf("longest")).toMatchObject({ linkInBody: true });
    const links = Object.fromEntries((await liveManifest(store, SET)).map((entry) => [entry.path, entry.link]));
    expect(links).toEqual({ longest: LONGEST, wide: WIDE, short: "a b/é" });
    const entries = Object.entries(links).map(([path, link]) => ({ path, link: link ?? "" }));
    expect((await verify(entries)).different).toEqual([]);

    // The body altered behind the applier's back: no target is taken from it, and no snapshot records one.
    const key = dataKey(SET, "wide");
    const object = await store.get(key);
    await store.put(key, Buffer.from(WIDE.replace("😀", "🙂")), object?.meta ?? {});
    await expect(liveManifest(store, SET)).rejects.toThrow(/^wide: its symlink target .* could not be read/);
    expect((await verify(entries)).different).toEqual([{ path: "wide", reason: "link target" }]);
  });

  it("renames an object written before the budget, its target near S3's limit, within the limit", async () => {
    // As the applier wrote it before: the whole encoded target in the metadata, 2,040 bytes in all.
    const bare = { ...symlinkMeta("x"), [META.sha256]: "0".repeat(64) };
    const target = "p".repeat(USER_METADATA_LIMIT_BYTES - 8 - userMetadataBytes(bare) + 1);
    const old = { ...bare, [META.linkTarget]: target, [META.sha256]: createHash("sha256").update(target).digest("hex") };
    expect(userMetadataBytes(old)).toBe(USER_METADATA_LIMIT_BYTES - 8);
    await store.put(dataKey(SET, "old"), Buffer.from(target), old);
    expect(await deliver([{ seq: 1, op: "rename", from: "old", to: "new" }])).toMatchObject({ kind: "applied" });
    const moved = await store.head(dataKey(SET, "new"));
    expect(userMetadataBytes(moved?.meta ?? {})).toBeLessThanOrEqual(USER_METADATA_LIMIT_BYTES);
    const meta = decodeMeta(moved?.meta);
    expect(meta).toMatchObject({ kind: "symlink", linkInBody: true });
    expect(meta && (await symlinkTarget(store, dataKey(SET, "new"), meta))).toBe(target);
  });

  it("refuses a message whose symlink target holds a lone surrogate (it has no UTF-8 form)", () => {
    const body = messageBody(SET, [{ seq: 1, op: "symlink", path: "l", target: "a\ud800b", mtimeNs: "1" }]);
    expect(() => parseMessage(body)).toThrow(BadMessageError);
    expect(() => parseMessage(messageBody(SET, [{ seq: 1, op: "symlink", path: "l", target: "a😀b", mtimeNs: "1" }]))).not.toThrow();
  });
});

describe("a symlink whose target is not UTF-8", () => {
  let dir: ReturnType<typeof tempDir>;
  let src: string;
  let journal: Journal;
  let spec: SetSpec;
  beforeEach(() => {
    dir = tempDir("tidemark-links-");
    src = join(dir.path, "src");
    mkdirSync(src, { recursive: true });
    journal = Journal.open(join(dir.path, "state"));
    spec = { name: SET, root: src, exclude: [] };
  });
  afterEach(() => {
    journal.close();
    dir.remove();
  });

  it("is named as not replicated, with its remedy, instead of replicated altered; once fixed it replicates exactly", async () => {
    symlinkSync(Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0x31, 0xe9]), join(src, "bad"));
    symlinkSync("\ufeffbom/日本語", join(src, "good"));
    const report = await barrierScan(journal, spec);
    const reason = `cannot be read: ${LINK_TARGET_NOT_UTF8}`;
    expect(report.skipped).toEqual([{ path: "bad", reason }]);
    expect(journal.index.entry(SET, "bad")).toBeUndefined();
    expect(journal.index.entry(SET, "good")?.link).toBe("\ufeffbom/日本語");
    const skipped = skippedNow(journal.skippedNames, SET, src).map(({ path, reason }) => ({ path, reason }));
    const counters = { nextSeq: 1, sentSeq: 0, backlogRecords: 0, backlogBytes: 0, messagesSent: 0, bytesSent: 0, lastSendError: null, overflowed: false, watcherProblem: null };
    const messages = findProblems({ set: SET, counters, generation: undefined, skipped, target: { error: "not asked" }, now: new Date() }).map((p) => p.message);
    expect(messages).toContain(`not replicated: bad: ${reason} (point the link at a UTF-8 target, or exclude it)`);

    rmSync(join(src, "bad"));
    symlinkSync("latin1é", join(src, "bad"));
    await barrierScan(journal, spec);
    expect(journal.index.entry(SET, "bad")?.link).toBe("latin1é");
    expect(journal.skippedNames.list(SET)).toEqual([]);
  });
});
