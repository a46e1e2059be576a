// A snapshot's verification right after it is taken (DESIGN 8b): every content
// object it names exists and holds the bytes of its SHA-256. The SHA-256 comes
// from the checksum the store computed on write when it keeps one (S3, asked
// with a HEAD), else from reading the object.
//
// What is trusted without reading: an object the previous verified snapshot
// proved, whose tag the store reports unchanged now (the tag changes with
// every write of other bytes). The proof of each verification is kept beside
// its snapshot (snapshotProofKey), so nothing is trusted that a check did not
// see. Objects are checked in a fixed order; near the invocation's deadline
// the position, counts and proof so far are saved and the marker's message is
// retried, so a big snapshot's check goes on in the next invocation.

import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { mapConcurrent } from "../../contract/async.ts";
import { blockDataKey, blockDataPrefix, dataKey, dataPrefix, preservedPrefix, snapshotProofKey } from "../../contract/layout.ts";
import { MAX_NAMED_PATHS, type SnapshotSummary, type SnapshotVerification } from "../../contract/tasks.ts";
import type { TargetStore } from "../store/store.ts";
import { listSnapshots, readBlockManifest, readManifest } from "./snapshots.ts";

/** Objects checked at once. */
const CHECK_CONCURRENCY = 32;
/** Objects between two saves of the progress (and at the deadline). */
const SAVE_EVERY = 2_000;

/** One content object a snapshot relies on. */
interface Item {
  readonly key: string;
  readonly sha256: string;
  readonly size?: number;
  readonly versionId?: string;
  /** What a failure names: the path (or block) whose content this is. */
  readonly label: string;
}

/** What a verification proved: object key -> [tag, sha256]. */
type Proof = Map<string, readonly [string, string]>;

export interface VerifySnapshotOptions {
  readonly now: () => Date;
  readonly signal?: AbortSignal;
  /** Saves the snapshot's summary with the verification as it stands (pending while it goes on). */
  readonly save: (verification: SnapshotVerification) => Promise<void>;
}

const sha256Of = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** What a verification proved; nothing when its proof is missing, damaged or not the one it recorded (then every object is checked again). */
async function readProof(store: TargetStore, set: string, id: string, sha256?: string): Promise<Proof> {
  const body = (await store.get(snapshotProofKey(set, id)))?.body;
  const proof: Proof = new Map();
  if (!body || (sha256 !== undefined && sha256Of(body) !== sha256)) return proof;
  let parsed: unknown;
  try {
    parsed = JSON.parse(gunzipSync(body).toString("utf8"));
  } catch {
    return proof;
  }
  if (typeof parsed !== "object" || parsed === null) return proof;
  for (const [key, value] of Object.entries(parsed)) {
    if (Array.isArray(value) && typeof value[0] === "string" && typeof value[1] === "string") proof.set(key, [value[0], value[1]]);
  }
  return proof;
}

/** Writes what a verification proved; resolves with its sha256. */
async function writeProof(store: TargetStore, set: string, id: string, proof: Proof): Promise<string> {
  const body = gzipSync(JSON.stringify(Object.fromEntries(proof)));
  await store.put(snapshotProofKey(set, id), body, {});
  return sha256Of(body);
}

/** The content objects of a snapshot, in a fixed order: its files (or distinct blocks), then the set's preserved content. */
async function itemsOf(store: TargetStore, summary: SnapshotSummary): Promise<{ items: Item[]; prefixes: string[] }> {
  const { set } = summary;
  if (summary.volume) {
    const seen = new Set<string>();
    const items: Item[] = [];
    for (const block of await readBlockManifest(store, summary)) {
      if (seen.has(block.sha256)) continue;
      seen.add(block.sha256);
      items.push({ key: blockDataKey(set, block.sha256), sha256: block.sha256, size: block.size, label: `block ${block.index}` });
    }
    return { items, prefixes: [blockDataPrefix(set)] };
  }
  const items: Item[] = [];
  for (const entry of await readManifest(store, summary)) {
    if (entry.kind !== "file" || !entry.sha256) continue;
    items.push({ key: dataKey(set, entry.path), sha256: entry.sha256, size: entry.size, ...(entry.versionId !== undefined ? { versionId: entry.versionId } : {}), label: entry.path });
  }
  // Older snapshots restore from preserved content: it is checked too (cheaply, while its tag stays the same).
  const preserved = preservedPrefix(set);
  for await (const object of store.list(preserved)) {
    const sha256 = object.key.slice(preserved.length);
    if (/^[0-9a-f]{64}$/.test(sha256)) items.push({ key: object.key, sha256, label: `preserved content ${sha256}` });
  }
  return { items, prefixes: [dataPrefix(set), preserved] };
}

/** Tags of the objects under the prefixes, as the store lists them now (an object it leaves out is checked with a HEAD). */
async function currentTags(store: TargetStore, prefixes: readonly string[]): Promise<Map<string, string>> {
  const tags = new Map<string, string>();
  for (const prefix of prefixes) {
    for await (const object of store.list(prefix)) if (object.etag !== undefined) tags.set(object.key, object.etag);
  }
  return tags;
}

type Checked = { how: "trusted" | "checksum" | "read"; problem?: string };

/** The object's SHA-256, streamed where the store can (a large file is never held whole). */
async function readHash(store: TargetStore, key: string, versionId: string | undefined): Promise<{ sha256: string } | undefined> {
  if (store.hash) return store.hash(key, versionId);
  const object = await store.get(key, versionId);
  return object && { sha256: sha256Of(object.body) };
}

async function checkItem(store: TargetStore, item: Item, tag: string | undefined, proven: readonly [string, string] | undefined): Promise<Checked> {
  // A snapshot just taken names the objects' current versions: the tag the store lists now is theirs.
  if (tag !== undefined && proven && proven[0] === tag && proven[1] === item.sha256) return { how: "trusted" };
  const head = await store.head(item.key);
  const current = head && (item.versionId === undefined || head.versionId === item.versionId) ? head : undefined;
  if (current && item.size !== undefined && current.size !== item.size) return { how: "read", problem: `${item.key} is ${current.size} bytes, the snapshot says ${item.size}` };
  if (current?.checksumSha256 !== undefined) {
    return current.checksumSha256 === item.sha256 ? { how: "checksum" } : { how: "checksum", problem: `${item.key} has sha256 ${current.checksumSha256} (the store's checksum), the snapshot says ${item.sha256}` };
  }
  const what = item.versionId !== undefined ? `version ${item.versionId} of ${item.key}` : item.key;
  if (!current && item.versionId === undefined) return { how: "read", problem: `${what} is missing` };
  const read = await readHash(store, item.key, item.versionId);
  if (!read) return { how: "read", problem: `${what} is missing` };
  const actual = read.sha256;
  return actual === item.sha256 ? { how: "read" } : { how: "read", problem: `${what} has sha256 ${actual}, the snapshot says ${item.sha256}` };
}

/** The paths of the set's snapshots whose content has this sha256 (to name what damaged preserved content breaks). */
async function pathsWithContent(store: TargetStore, set: string, sha256: string): Promise<string[]> {
  const paths = new Set<string>();
  for (const snapshot of await listSnapshots(store, set)) {
    if (snapshot.volume) continue;
    const entries = await readManifest(store, snapshot).catch(() => []);
    for (const entry of entries) if (entry.sha256 === sha256) paths.add(`${entry.path} (snapshot ${snapshot.id})`);
  }
  return [...paths];
}

/**
 * Checks the content of a snapshot whose manifest is written, going on from
 * where a previous invocation saved its progress. Resolves with the finished
 * verification; rejects with the signal's reason once progress is saved when
 * the signal aborts.
 */
export async function verifySnapshot(store: TargetStore, summary: SnapshotSummary, options: VerifySnapshotOptions): Promise<SnapshotVerification> {
  const { set } = summary;
  const before = summary.verification?.status === "pending" ? summary.verification : undefined;
  const trusted = (await listSnapshots(store, set))
    .filter((s) => s.id !== summary.id && s.verification?.status === "verified" && s.verification.proofSha256 !== undefined && (s.volume !== undefined) === (summary.volume !== undefined))
    .at(-1);
  const trustedFrom = trusted?.id;
  const previous = trusted ? await readProof(store, set, trusted.id, trusted.verification?.proofSha256) : new Map<string, readonly [string, string]>();
  const proof = before ? await readProof(store, set, summary.id) : new Map<string, readonly [string, string]>();
  const { items, prefixes } = await itemsOf(store, summary);
  const tags = await currentTags(store, prefixes);
  const state: SnapshotVerification = before
    ? { ...before, failures: [...before.failures] }
    : { status: "pending", objects: 0, byChecksum: 0, read: 0, trusted: 0, failures: [], failureCount: 0, next: 0, ...(trustedFrom !== undefined ? { trustedFrom } : {}) };
  const save = async () => {
    await writeProof(store, set, summary.id, proof);
    await options.save({ ...state });
  };

  let next = state.next ?? 0;
  let sinceSave = 0;
  while (next < items.length) {
    if (options.signal?.aborted) {
      state.next = next;
      await save();
      throw options.signal.reason;
    }
    const chunk = items.slice(next, next + CHECK_CONCURRENCY * 4);
    const results = await mapConcurrent(chunk, CHECK_CONCURRENCY, (item) => checkItem(store, item, tags.get(item.key), previous.get(item.key)));
    results.forEach((result, i) => {
      const item = chunk[i];
      if (!item) return;
      state.objects += 1;
      if (result.how === "trusted") state.trusted += 1;
      else if (result.how === "checksum") state.byChecksum += 1;
      else state.read += 1;
      const tag = tags.get(item.key);
      if (result.problem !== undefined) {
        state.failureCount += 1;
        if (state.failures.length < MAX_NAMED_PATHS) state.failures.push({ path: item.label, key: item.key, problem: result.problem });
      } else if (tag !== undefined) proof.set(item.key, [tag, item.sha256]);
    });
    next += chunk.length;
    sinceSave += chunk.length;
    if (sinceSave >= SAVE_EVERY && next < items.length) {
      sinceSave = 0;
      state.next = next;
      await save();
    }
  }
  // Damaged preserved content is named by the paths of the snapshots that need it.
  for (const failure of state.failures) {
    if (!failure.key.startsWith(preservedPrefix(set))) continue;
    const paths = await pathsWithContent(store, set, failure.key.slice(failure.key.lastIndexOf("/") + 1));
    if (paths.length > 0) failure.path = paths.slice(0, 10).join(", ");
  }
  const { next: _done, ...finished } = state;
  const proofSha256 = await writeProof(store, set, summary.id, proof);
  return { ...finished, status: state.failureCount > 0 ? "failed" : "verified", at: options.now().toISOString(), proofSha256 };
}
