// What the point-in-time history pays on an unversioned bucket to keep what
// an overwrite replaces (lambdas/history/preserved-content.ts): a warm
// applier that knows every hash under preserved/ copies without looking
// first, copies a hash once however many files of a step hold it, lists
// preserved/ again after retention deleted some, and a cold one still looks
// before it copies. Every moment restores byte for byte throughout.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { DAY_MS } from "../../contract/history.ts";
import { PREFIX, preservedKey } from "../../contract/layout.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { LiveContent } from "../../lambdas/history/live-content.ts";
import { listPreserved } from "../../lambdas/history/preserved-content.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { CopyOptions, WriteResult } from "../../lambdas/store/store.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "docs";

/**
 * An unversioned store that logs its requests; its copies take a few ms, so the puts of one step overlap them.
 * With `failAt` set, the write that many writes on fails: an applier instance that dies mid-message.
 */
class RequestLog extends MemoryStore {
  readonly requests: string[] = [];
  failAt: number | undefined;
  #fail(): void {
    if (this.failAt === undefined) return;
    this.failAt -= 1;
    if (this.failAt > 0) return;
    this.failAt = undefined;
    throw new Error("applier instance died mid-message");
  }
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    this.requests.push(`PUT ${key}`);
    this.#fail();
    return super.put(key, body, meta);
  }
  override async copy(from: string, to: string, meta: Record<string, string>, options?: CopyOptions): Promise<WriteResult> {
    this.requests.push(`COPY ${to}`);
    this.#fail();
    await new Promise((resolve) => setTimeout(resolve, 5));
    return super.copy(from, to, meta, options);
  }
  override async head(key: string) {
    this.requests.push(`HEAD ${key}`);
    return super.head(key);
  }
  preservedRequests(method: string): string[] {
    return this.requests.filter((r) => r.startsWith(`${method} ${PREFIX.preserved}`));
  }
  clear(): void {
    this.requests.length = 0;
  }
}

function testClock(): { now: () => number; advance(ms: number): number } {
  let now = Date.now() - 5 * DAY_MS;
  return {
    now: () => now,
    advance(ms) {
      now += ms;
      return now;
    },
  };
}

/** Sends one message of puts (path → text) stamped at the clock moved on by a second; returns the moment. */
function sender(store: RequestLog, clock: ReturnType<typeof testClock>) {
  let seq = 0;
  return async (applier: Applier, files: Record<string, string>, advanceMs = 1000): Promise<number> => {
    const at = clock.advance(advanceMs);
    store.clear();
    const records = Object.entries(files).map(([path, text]) => ({ ...putRecord((seq += 1), path, text), at }));
    expect(await applier.applyMessage(signedIncoming(`m${seq}`, SET, messageBody(SET, records)))).toMatchObject({ kind: "applied" });
    return at;
  };
}

async function expectRestores(store: MemoryStore, moments: readonly { at: number; files: Record<string, string> }[]): Promise<void> {
  for (const moment of moments) {
    const out = tempDir("tidemark-at-");
    try {
      await restoreAt(store, SET, moment.at, out.path, { force: true });
      for (const [path, text] of Object.entries(moment.files)) expect(readFileSync(join(out.path, path), "utf8")).toBe(text);
    } finally {
      out.remove();
    }
  }
}

it("a warm applier copies what each overwrite replaces to preserved/ without a HEAD first, and no hash twice", async () => {
  const store = new RequestLog();
  const clock = testClock();
  const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 7 } });
  const send = sender(store, clock);
  const n = 20;
  const round = (version: string) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}.txt`, `file ${i} ${version}`]));
  // What each round replaces: nothing, then content never preserved twice over, then b again (c is new to
  // preserved/), then c again: b was preserved in round 2, so nothing is copied.
  const rounds: [string, number][] = [["a", 0], ["b", n], ["c", n], ["b", n], ["c", 0]];
  const moments: { at: number; files: Record<string, string> }[] = [];
  for (const [version, copies] of rounds) {
    const files = round(version);
    moments.push({ at: await send(applier, files), files });
    // Nothing under preserved/ is looked for: the set's first checkpoint listed it (empty), every copy since is this applier's.
    expect(store.preservedRequests("HEAD")).toEqual([]);
    expect(store.preservedRequests("COPY")).toHaveLength(copies);
  }
  await expectRestores(store, moments);
});

it("files of one message that hold the same content, overwritten together, make one copy of it", async () => {
  const store = new RequestLog();
  const clock = testClock();
  const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 7 } });
  const send = sender(store, clock);
  const same = { "a.txt": "same bytes", "b.txt": "same bytes", "c.txt": "same bytes" };
  const first = await send(applier, same);
  const changed = { "a.txt": "a now", "b.txt": "b now", "c.txt": "c now" };
  const second = await send(applier, changed);
  expect(store.preservedRequests("COPY")).toEqual([`COPY ${preservedKey(SET, sha("same bytes"))}`]);
  expect(store.preservedRequests("HEAD")).toEqual([]);
  await expectRestores(store, [
    { at: first, files: same },
    { at: second, files: changed },
  ]);
});

it("a cold applier looks under preserved/ before it copies, and copies only what is not there", async () => {
  const store = new RequestLog();
  const clock = testClock();
  const history = { days: 7 };
  const send = sender(store, clock);
  const warm = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
  const v0 = { "a.txt": "zero", "b.txt": "b zero" };
  const v1 = { "a.txt": "one", "b.txt": "b one" };
  const moments = [{ at: await send(warm, v0), files: v0 }];
  moments.push({ at: await send(warm, v1), files: v1 });
  // Another instance: it knows nothing of preserved/, so it asks; a.txt goes back to content preserved already.
  const cold = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
  const v2 = { "a.txt": "zero", "b.txt": "b two" };
  moments.push({ at: await send(cold, v2), files: v2 });
  expect(store.preservedRequests("HEAD").sort()).toEqual([`HEAD ${preservedKey(SET, sha("one"))}`, `HEAD ${preservedKey(SET, sha("b one"))}`].sort());
  expect(store.preservedRequests("COPY").sort()).toEqual([`COPY ${preservedKey(SET, sha("one"))}`, `COPY ${preservedKey(SET, sha("b one"))}`].sort());
  const v3 = { "a.txt": "one" };
  moments.push({ at: await send(cold, v3), files: { ...v2, ...v3 } });
  // "zero" was preserved by the warm instance: the cold one finds it and copies nothing.
  expect(store.preservedRequests("HEAD")).toEqual([`HEAD ${preservedKey(SET, sha("zero"))}`]);
  expect(store.preservedRequests("COPY")).toEqual([]);
  await expectRestores(store, moments);
});

it("a warm applier whose object another instance replaced in a message it did not finish copies nothing wrong to preserved/", async () => {
  const store = new RequestLog();
  const clock = testClock();
  const history = { days: 7 };
  const a = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
  const b = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
  const first = await sender(store, clock)(a, { "a.txt": "what a held" });
  const at = clock.advance(1000);
  const second = signedIncoming("m2", SET, messageBody(SET, [{ ...putRecord(2, "a.txt", "what b wrote"), at }]));
  // b preserves a.txt's content, replaces it, and dies writing the segment: the status (a's trust check) does not move.
  store.failAt = 3;
  await expect(b.applyMessage(second)).rejects.toThrow(/died mid-message/);
  expect((await store.get(`${PREFIX.data}${SET}/a.txt`))?.body.toString()).toBe("what b wrote");
  // The message comes back to a, which still takes a.txt to hold what it wrote there: its copy is refused, it asks.
  store.clear();
  expect(await a.applyMessage(second)).toMatchObject({ kind: "applied" });
  expect((await store.get(preservedKey(SET, sha("what a held"))))?.body.toString()).toBe("what a held");
  expect(store.requests).toContain(`HEAD ${PREFIX.data}${SET}/a.txt`);
  await expectRestores(store, [
    { at: first, files: { "a.txt": "what a held" } },
    { at, files: { "a.txt": "what b wrote" } },
  ]);
});

it("after retention deleted preserved content, content it held is copied again when it is replaced again", async () => {
  const store = new RequestLog();
  const clock = testClock();
  const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 1, checkpointEvery: 2, retentionEveryMs: 0 } });
  const send = sender(store, clock);
  const hour = 3_600_000;
  await send(applier, { "a.txt": "old content" });
  await send(applier, { "a.txt": "newer" }, hour);
  const key = preservedKey(SET, sha("old content"));
  expect(store.objects.has(key)).toBe(true);
  // Other changes for as long as some moment of the window holds "old content": then retention deletes its copy.
  for (let i = 0; i < 100 && store.objects.has(key); i++) await send(applier, { "b.txt": `b ${i}` }, hour);
  expect(store.objects.has(key)).toBe(false);
  // Right after (before another checkpoint lists preserved/ again) the content comes back at another path and is
  // replaced again: it must be copied again, not taken as preserved.
  const back = { at: await send(applier, { "c.txt": "old content" }, hour), files: { "c.txt": "old content" } };
  const after = { at: await send(applier, { "c.txt": "c changed" }, hour), files: { "c.txt": "c changed" } };
  expect(store.preservedRequests("COPY")).toEqual([`COPY ${key}`]);
  expect(store.objects.has(key)).toBe(true);
  await expectRestores(store, [back, after]);
});

it("a listing of preserved/ longer than it remembers leaves every hash to be asked about", async () => {
  const store = new MemoryStore();
  for (const text of ["x", "y", "z"]) await store.put(preservedKey(SET, sha(text)), Buffer.from(text));
  const live = new LiveContent();
  await listPreserved(store, SET, live, 3);
  expect(live.preservedKnown(sha("x"))).toBe(true);
  expect(live.preservedKnown(sha("other"))).toBe(false);
  await listPreserved(store, SET, live, 2);
  expect(live.preservedKnown(sha("x"))).toBeUndefined();
  expect(live.preservedKnown(sha("other"))).toBeUndefined();
});

it("forgets an object's ETag when a checkpoint names another content at its key than the one the ETag was learned with", () => {
  const live = new LiveContent();
  const entry = (path: string, text: string) => ({ path, kind: "file" as const, size: text.length, mode: 0o644, mtimeNs: "1", sha256: sha(text) });
  const key = (path: string) => `data/${SET}/${path}`;
  for (const [path, text] of [["same.txt", "same"], ["moved.txt", "old"]] as const) {
    live.tagged(key(path), `"etag-${path}"`);
    live.learn(key(path), sha(text));
  }
  live.seed([entry("same.txt", "same"), entry("moved.txt", "new")], key);
  expect(live.etagAt(key("same.txt"))).toBe('"etag-same.txt"');
  expect(live.contentAt(key("moved.txt"))).toBe(sha("new"));
  expect(live.etagAt(key("moved.txt"))).toBeUndefined();
});
