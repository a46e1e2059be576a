// A message applied again from its checkpoint after the applier was killed
// anywhere in it (lambdas/applier/reapply.ts): a rename followed in the same
// message by a record that touches its source or target, and a delta followed
// by a later change of its file, converge: the set stays in sync, the live
// mirror is exact, and every moment of the message restores.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { SQSRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { dataPrefix } from "../../contract/layout.ts";
import { encodeInline, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import type { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { messageBody, putRecord, signedIncoming, signedSqsAttributes } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";
import { KillableStore } from "../support/killable-store.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "docs";
const T0 = 1_800_000_000_000;
const at = (seq: number) => T0 + seq * 1000;


type Tree = Map<string, string>;
type Step = (seq: number, tree: Tree) => WireRecord;

const put =
  (path: string, text: string): Step =>
  (seq, tree) => {
    tree.set(path, text);
    return { ...putRecord(seq, path, text), at: at(seq) };
  };
/** A delta of the file as the source held it: every byte travels as one range. */
const delta =
  (path: string, text: string): Step =>
  (seq, tree) => {
    const base = tree.get(path);
    if (base === undefined) throw new Error(`test: no ${path} to make a delta of`);
    tree.set(path, text);
    return { ...putRecord(seq, path, text), at: at(seq), content: encodeInline(Buffer.from(text)), delta: { base: sha(base), blocks: [], ranges: [[0, text.length]] } };
  };
const rename =
  (from: string, to: string): Step =>
  (seq, tree) => {
    const moved = tree.get(from);
    if (moved === undefined) throw new Error(`test: no ${from} to rename`);
    tree.set(to, moved);
    tree.delete(from);
    return { seq, at: at(seq), op: "rename", from, to };
  };
const remove =
  (path: string): Step =>
  (seq, tree) => {
    tree.delete(path);
    return { seq, at: at(seq), op: "delete", path };
  };

const FIRST: Step[] = [put("a", "a at 1"), put("c", "c at 2"), put("p", "p at 3")];
/** The delta the delta scenarios begin with. */
const DELTA_FIRST = delta("p", "P at 3");
const SCENARIOS: [string, Step[]][] = [
  ["a rename, then a put to its target", [rename("a", "b"), put("b", "b at 5")]],
  ["a rename, then a put to its source", [rename("a", "b"), put("a", "a at 5")]],
  ["a rename, then a delta of its target", [rename("a", "b"), delta("b", "A at 1")]],
  ["a rename, then a rename onto its source", [rename("a", "b"), rename("c", "a")]],
  ["a rename, then the deletion of its target", [rename("a", "b"), remove("b")]],
  ["a rename, then its target renamed on", [rename("a", "b"), rename("b", "c")]],
  ["a delta, then a put of its file", [DELTA_FIRST, put("p", "p at 5"), put("q", "q at 6")]],
  ["a delta, then a put reverting its file", [DELTA_FIRST, put("p", "p at 3"), put("q", "q at 6")]],
  ["two deltas of one file", [DELTA_FIRST, delta("p", "P at 5")]],
  ["a delta, then its file renamed", [DELTA_FIRST, rename("p", "q")]],
  ["a delta, then its file deleted and put again", [DELTA_FIRST, remove("p"), put("p", "p at 6")]],
];

type Mode = "batch" | "message" | "no history";

function sqsRecord(id: string, body: string): SQSRecord {
  const now = String(Date.now());
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: "1", SentTimestamp: now, SenderId: "x", ApproximateFirstReceiveTimestamp: now, MessageGroupId: SET },
    messageAttributes: signedSqsAttributes(SET, body),
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
    awsRegion: "us-east-1",
  };
}

/** Delivers a message the way `mode` names; true when it was applied through, false when the applier was killed. */
function deliverer(store: MemoryStore, mode: Mode): (id: string, body: string) => Promise<boolean> {
  const applier = () => new Applier({ store, log: () => {}, now: () => new Date(T0 + 1_000_000), history: { days: mode === "no history" ? 0 : 7 } });
  return async (id, body) => {
    // A killed applier's memory dies with it: each delivery starts a fresh one.
    if (mode === "batch") return (await createHandler(applier(), () => {})({ Records: [sqsRecord(id, body)] })).batchItemFailures.length === 0;
    try {
      await applier().applyMessage(signedIncoming(id, SET, body));
      return true;
    } catch {
      return false;
    }
  };
}

async function liveTree(store: MemoryStore): Promise<Record<string, string>> {
  const tree: Record<string, string> = {};
  for await (const object of store.list(dataPrefix(SET))) {
    const body = await store.get(object.key);
    tree[object.key.slice(dataPrefix(SET).length)] = body?.body.toString() ?? "";
  }
  return tree;
}

/** The set restored at `moment` (path -> content), and the paths the restore reported it could not write. */
async function restoredAt(store: MemoryStore, moment: number): Promise<{ tree: Record<string, string>; failed: string[] }> {
  const out = tempDir("tidemark-reapply-");
  try {
    const root = join(out.path, "tree");
    const result = await restoreAt(store, SET, moment, root);
    return { tree: Object.fromEntries(readdirSync(root).map((name) => [name, readFileSync(join(root, name), "utf8")])), failed: (result.failures ?? []).map((f) => f.path) };
  } finally {
    out.remove();
  }
}

describe.each<[Mode, boolean]>([
  ["batch", false],
  ["batch", true],
  ["message", false],
  ["message", true],
  ["no history", false],
])("a message applied again after a kill at each of its writes (%s, versioned bucket: %s)", (mode, versioned) => {
  it.each(SCENARIOS)("%s", async (_what, steps) => {
    for (let killAt = 1; ; killAt++) {
      const store = new KillableStore({ versioned });
      const deliver = deliverer(store, mode);
      const tree: Tree = new Map();
      const moments: Record<string, string>[] = [{}];
      const records = (list: Step[], first: number) =>
        list.map((step, i) => {
          const record = step(first + i, tree);
          moments.push(Object.fromEntries([...tree].sort()));
          return record;
        });
      expect(await deliver("m1", messageBody(SET, records(FIRST, 1)))).toBe(true);
      const body = messageBody(SET, records(steps, FIRST.length + 1));
      const last = FIRST.length + steps.length;

      store.failAfter = killAt;
      const through = await deliver("m2", body);
      store.failAfter = undefined;
      if (through) {
        // No write left to be killed at: every point was tried.
        expect(killAt).toBeGreaterThan(2);
        return;
      }
      // Delivered again, as often as SQS would, by a fresh applier each time.
      expect(await deliver("m2", body)).toBe(true);
      const status = await readSetStatus(store, SET);
      expect(status.reason, `killed at write ${killAt}`).toBeUndefined();
      expect(status.state).toBe("in-sync");
      expect(status.lastSeq).toBe(last);
      expect(await liveTree(store), `killed at write ${killAt}`).toEqual(Object.fromEntries([...tree].sort()));
      if (mode === "no history") continue;
      for (let seq = FIRST.length; seq <= last; seq++) {
        const { tree: restored, failed } = await restoredAt(store, at(seq));
        const expected = moments[seq] ?? {};
        // A delta applied again after a later put of its file was not written twice: on a versioned bucket the version
        // it made first is not known, so that one moment of the file is reported unrestorable (never restored wrong).
        const unknown = versioned && steps[0] === DELTA_FIRST && seq === FIRST.length + 1 && failed.length > 0 ? ["p"] : [];
        expect(failed, `the moment of seq ${seq}, killed at write ${killAt}`).toEqual(unknown);
        expect(restored, `the moment of seq ${seq}, killed at write ${killAt}`).toEqual(Object.fromEntries(Object.entries(expected).filter(([path]) => !unknown.includes(path))));
      }
    }
  });
});
