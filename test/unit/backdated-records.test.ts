// A source host stamps its records with its own clock (DESIGN 8: untrusted
// with respect to history). A record stamped far before its message reached
// the target would rewrite moments the target already held: a delete
// backdated to just after an idle set's last change made every moment of the
// window restore the file as gone, and the retention that followed dropped the
// only checkpoint that still held it. The applier counts a record no earlier
// than MAX_RECORD_LAG_MS before it applies it (lambdas/history/record-time.ts).

import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { DAY_MS } from "../../contract/history.ts";
import type { WireMessage } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MAX_RECORD_LAG_MS, recordTime } from "../../lambdas/history/record-time.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";

async function fileAt(store: MemoryStore, moment: number): Promise<string | undefined> {
  const out = tempDir("tidemark-at-");
  try {
    await restoreAt(store, SET, moment, out.path, { force: true });
    const path = join(out.path, "a.txt");
    return existsSync(path) ? readFileSync(path, "utf8") : undefined;
  } finally {
    out.remove();
  }
}

describe("records stamped long before they reach the target", () => {
  it.each([
    ["an unversioned bucket", false],
    ["a versioned bucket", true],
  ])("cannot move a delete into moments the target held the file, nor let retention drop it (%s)", async (_what, versioned) => {
    const store = new MemoryStore({ versioned });
    // A day in the past, so the memory store's own stamps stay later than it.
    let now = Date.now() - 9 * DAY_MS;
    const applier = new Applier({ store, log: () => {}, now: () => new Date(now), history: { days: 7, retentionEveryMs: 0 } });
    const send = (records: WireMessage["records"]) => applier.applyMessage(signedIncoming(`m${records[0]?.seq ?? 0}`, SET, messageBody(SET, records)));
    const written = now;
    await send([{ ...putRecord(1, "a.txt", "precious"), at: written }]);
    // Idle for eight days, then a delete stamped right after the last change (or at the epoch: clamped the same).
    now += 8 * DAY_MS;
    const arrived = now;
    await send([{ seq: 2, op: "delete", path: "a.txt", at: 0 }]);
    now += 1000;
    // Every moment the target held the file still restores it, inside the window.
    expect(await fileAt(store, arrived - DAY_MS)).toBe("precious");
    expect(await fileAt(store, arrived - MAX_RECORD_LAG_MS - 1)).toBe("precious");
    expect(await fileAt(store, now)).toBeUndefined();
  });

  it("keep the agent's time when it is recent, and never go backwards or ahead of the target", () => {
    const now = 10 * DAY_MS;
    expect(recordTime(now - 5 * DAY_MS, now - 60_000, now)).toBe(now - 60_000);
    expect(recordTime(now - 5 * DAY_MS, now - DAY_MS, now)).toBe(now - MAX_RECORD_LAG_MS);
    expect(recordTime(now - 1000, now - 60_000, now)).toBe(now - 1000);
    expect(recordTime(now - 5 * DAY_MS, now + DAY_MS, now)).toBe(now);
    expect(recordTime(now - 5 * DAY_MS, undefined, now)).toBe(now);
  });
});
