// A source host stamps its records with its own clock (DESIGN 8: untrusted
// with respect to history). A record stamped far before its message reached
// the target would rewrite moments the target already held: a delete
// backdated to just after an idle set's last change made every moment of the
// window restore the file as gone, and the retention that followed dropped the
// only checkpoint that still held it. The applier counts a record no earlier
// than MAX_RECORD_LAG_MS before its message was sent (the queue's
// SentTimestamp, which the host cannot set; lambdas/history/record-time.ts),
// so a message held on the target's side keeps its honest times.

import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { DAY_MS } from "../../contract/history.ts";
import type { WireMessage } from "../../contract/wire.ts";
import { Applier, type IncomingMessage } from "../../lambdas/applier/applier.ts";
import { listCheckpoints } from "../../lambdas/history/history-store.ts";
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

  // Sends at `sentAt` (the queue's SentTimestamp); the applier applies at its own clock.
  function sentHarness() {
    const store = new MemoryStore();
    const start = Date.now() - 2 * DAY_MS;
    let now = start;
    const applier = new Applier({ store, log: () => {}, now: () => new Date(now), history: { days: 7 } });
    const send = (records: WireMessage["records"], sentAt: number) => {
      const incoming: IncomingMessage = { ...signedIncoming(`m${records[0]?.seq ?? 0}`, SET, messageBody(SET, records)), sentAt };
      return applier.applyMessage(incoming);
    };
    return { store, start, send, setNow: (ms: number) => (now = ms) };
  }

  it("keeps the time of a record whose message waited on the target's side (an applier outage)", async () => {
    const h = sentHarness();
    const t = h.start;
    await h.send([{ ...putRecord(1, "a.txt", "precious"), at: t }], t);
    // Deleted and sent ten minutes later; applied three hours later, after an outage of the applier.
    const deleted = t + 10 * 60_000;
    h.setNow(t + 3 * 60 * 60_000);
    await h.send([{ seq: 2, op: "delete", path: "a.txt", at: deleted }], deleted);
    expect(await fileAt(h.store, deleted - 1)).toBe("precious");
    expect(await fileAt(h.store, deleted + 60_000)).toBeUndefined();
  });

  it("places a change no earlier than an hour before its message was sent", async () => {
    const h = sentHarness();
    const t = h.start;
    await h.send([{ ...putRecord(1, "a.txt", "precious"), at: t }], t);
    // Sent five hours on, stamped a second after the put, applied when sent.
    const sent = t + 5 * 60 * 60_000;
    h.setNow(sent);
    await h.send([{ seq: 2, op: "delete", path: "a.txt", at: t + 1000 }], sent);
    expect(await fileAt(h.store, sent - MAX_RECORD_LAG_MS - 1)).toBe("precious");
    expect(await fileAt(h.store, sent - MAX_RECORD_LAG_MS)).toBeUndefined();
  });

  it("stamps a set's first checkpoint just before its first record as clamped, not as the host stamped it", async () => {
    const h = sentHarness();
    const t = h.start;
    await h.send([{ ...putRecord(1, "a.txt", "precious"), at: 0 }], t);
    const [first] = await listCheckpoints(h.store, SET);
    expect(first?.at).toBe(t - MAX_RECORD_LAG_MS - 1);
  });

  it("keep the agent's time when it is recent, and never go backwards or ahead of the target", () => {
    const now = 10 * DAY_MS;
    expect(recordTime(now - 5 * DAY_MS, now - 60_000, now)).toBe(now - 60_000);
    expect(recordTime(now - 5 * DAY_MS, now - DAY_MS, now)).toBe(now - MAX_RECORD_LAG_MS);
    expect(recordTime(now - 1000, now - 60_000, now)).toBe(now - 1000);
    expect(recordTime(now - 5 * DAY_MS, now + DAY_MS, now)).toBe(now);
    expect(recordTime(now - 5 * DAY_MS, undefined, now)).toBe(now);
    // Bounded by when the message was sent, not when it was applied; never after the applier's clock.
    expect(recordTime(now - 5 * DAY_MS, now - DAY_MS, now, now - 2 * 60 * 60_000)).toBe(now - 3 * 60 * 60_000);
    expect(recordTime(now - 5 * DAY_MS, now - DAY_MS, now, now + DAY_MS)).toBe(now);
  });
});
