// Work journaled from a set's tree (captures, scans, verify, repair, mirror,
// markers, a new generation's resync) is refused on the hold the look right
// before it found, even one not recorded in the journal (the look a stopping
// agent cut off), and on a hold recorded before it.

import { expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { assertRootAnswers } from "../../agent/set-context.ts";
import { RootHeldError, type RootHold } from "../../agent/set-roots.ts";
import { tempDir } from "../support/tree.ts";

const HOLD: RootHold = { set: "s", state: "root-unresponsive", root: "/mnt/gone", expected: "the folder at /mnt/gone", found: "no answer", since: "2026-12-02T00:00:00.000Z" };

it("refuses on the hold the look found, though the journal records none", async () => {
  const state = tempDir("tidemark-root-answers-");
  const journal = Journal.open(state.path);
  try {
    const context = { journal, spec: { name: "s" }, checkRoot: () => Promise.resolve(HOLD) };
    await expect(assertRootAnswers(context as never, "no marker is journaled")).rejects.toThrow(RootHeldError);
    await expect(assertRootAnswers(context as never, "no marker is journaled")).rejects.toThrow(/root-unresponsive.*no marker is journaled/);
    // The look found the root good: nothing refused.
    await expect(assertRootAnswers({ ...context, checkRoot: () => Promise.resolve(undefined) } as never)).resolves.toBeUndefined();
  } finally {
    journal.close();
    state.remove();
  }
});
