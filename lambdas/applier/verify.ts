// Verification on the target (a `verify` record): the live mirror of a set
// compared with the source's manifest as of the record's seq. Differences go
// into a report the agent reads; orphans follow the record's policy.

import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { mapConcurrent } from "../../contract/async.ts";
import { dataPrefix, decodeMeta, orphanKey, type VerifyReport } from "../../contract/layout.ts";
import { BadMessageError, BLOCK_SIZE, blockCount, ManifestEntrySchema, quotedPath, type ManifestEntry, type VerifyRecord } from "../../contract/wire.ts";
import { symlinkTarget } from "../link-targets.ts";
import type { TargetStore } from "../store/store.ts";

/** Object reads at once while verifying. */
const VERIFY_CONCURRENCY = 16;

/** The manifest's entries; throws BadMessageError on a line that is not a valid entry. */
export function parseManifest(bytes: Buffer): ManifestEntry[] {
  let text: string;
  try {
    text = gunzipSync(bytes).toString("utf8");
  } catch (error) {
    throw new BadMessageError(`verify manifest does not gunzip: ${(error as Error).message}`);
  }
  const entries: ManifestEntry[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line === "") continue;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new BadMessageError(`verify manifest line ${i + 1} is not JSON`);
    }
    const parsed = ManifestEntrySchema.safeParse(json);
    if (!parsed.success) {
      // The entry's path, when the line has one: the file whose value this applier cannot take, not only a line number.
      const path = (json as { path?: unknown } | null)?.path;
      const named = typeof path === "string" ? ` (path ${quotedPath(path)})` : "";
      const issue = parsed.error.issues[0];
      const field = issue?.path.length ? `${issue.path.join(".")}: ` : "";
      throw new BadMessageError(`verify manifest line ${i + 1}${named}: ${field}${issue?.message ?? "invalid"}`);
    }
    entries.push(parsed.data);
  }
  return entries;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Blocks of body whose hash differs from the manifest's. */
function differingBlocks(body: Buffer, blocks: string): number[] {
  const expected = Buffer.from(blocks, "base64");
  const out: number[] = [];
  for (let index = 0; index < blockCount(body.length); index++) {
    const actual = createHash("sha256").update(body.subarray(index * BLOCK_SIZE, (index + 1) * BLOCK_SIZE)).digest();
    if (!actual.equals(expected.subarray(index * 32, index * 32 + 32))) out.push(index);
  }
  return out;
}

/** Why the object at key is not the manifest's entry, or undefined when it is. */
async function compare(store: TargetStore, key: string, entry: ManifestEntry, deep: boolean): Promise<{ reason: string; blocks?: number[] } | undefined> {
  const head = await store.head(key);
  const meta = decodeMeta(head?.meta);
  if (!head || !meta) return { reason: "not written by tidemark" };
  if (meta.kind !== entry.kind) return { reason: `is a ${meta.kind}, the source has a ${entry.kind}` };
  if (entry.kind === "symlink") return (await symlinkTarget(store, key, meta)) === entry.link ? undefined : { reason: "link target" };
  if (meta.mode !== entry.mode) return { reason: "mode" };
  if (entry.kind === "dir") return meta.mtimeNs === entry.mtimeNs ? undefined : { reason: "mtime" };
  if (meta.mtimeNs !== entry.mtimeNs) return { reason: "mtime" };
  if (head.size !== entry.size) return { reason: "size" };
  if (meta.sha256 !== entry.sha256) return { reason: "sha256" };
  if (!deep) return undefined;
  const body = (await store.get(key))?.body;
  if (!body) return { reason: "vanished while verifying" };
  if (sha256(body) === entry.sha256) return undefined;
  return entry.blocks && body.length === entry.size ? { reason: "content", blocks: differingBlocks(body, entry.blocks) } : { reason: "content" };
}

export async function verifyTarget(
  store: TargetStore,
  set: string,
  record: VerifyRecord,
  entries: readonly ManifestEntry[],
  now: Date,
  /** Called before an orphan is deleted or moved aside (a kept snapshot may still need its content). */
  beforeRemove: (key: string) => Promise<void> = async () => {},
): Promise<VerifyReport> {
  const prefix = dataPrefix(set);
  const onTarget = new Map<string, number>();
  for await (const object of store.list(prefix)) onTarget.set(object.key, object.size);

  const keyOf = (entry: ManifestEntry) => `${prefix}${entry.path}${entry.kind === "dir" ? "/" : ""}`;
  const report: VerifyReport = { id: record.id, set, seq: record.seq, deep: record.deep, at: now.toISOString(), checked: entries.length, missing: [], different: [], extra: [], orphans: record.orphans };
  const results = await mapConcurrent(entries, VERIFY_CONCURRENCY, async (entry) => {
    const key = keyOf(entry);
    if (!onTarget.has(key)) return { entry, missing: true as const };
    return { entry, difference: await compare(store, key, entry, record.deep) };
  });
  const expected = new Set(entries.map(keyOf));
  for (const result of results) {
    if ("missing" in result) report.missing.push(result.entry.path);
    else if (result.difference) report.different.push({ path: result.entry.path, ...result.difference });
  }
  const orphans = [...onTarget.keys()].filter((key) => !expected.has(key)).sort();
  report.extra = orphans.map((key) => key.slice(prefix.length).replace(/\/$/, ""));
  for (const key of orphans) {
    if (record.orphans !== "report") await beforeRemove(key);
    if (record.orphans === "move-aside") {
      const head = await store.head(key);
      if (head) await store.copy(key, orphanKey(set, record.id, key), head.meta);
    }
    if (record.orphans !== "report") await store.delete(key);
  }
  return report;
}
