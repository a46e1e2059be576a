// A task marker whose digest list was spooled, and the spool file lost (a cleaner removed the file alone, or the
// whole folder while the message before it was on the wire and the marker's message packed ahead): the marker goes
// on without its list (its digest alone still proves the snapshot), never skipped.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { readTaskResult } from "../../lambdas/target/readers.ts";
import { skipRefusedRecord } from "../../agent/poison.ts";
import { markerWithSpooledList } from "../support/spooled-marker.ts";
import { agentHarness } from "../support/harness.ts";

const SET = "app";

it("a marker whose list spool file alone was removed is sent without the list", async () => {
  const h = agentHarness(SET);
  try {
    writeFileSync(join(h.src.path, "a.txt"), "a");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const marker = await markerWithSpooledList(h, SET, "the-list");
    rmSync(join(h.journal.spoolDir, "the-list"));
    await h.agent.drain(SET);
    const result = await readTaskResult(h.store, SET, marker.id);
    expect(result?.status).toBe("succeeded");
    expect(h.journal.skipped(SET)).toEqual([]);
  } finally {
    await h.close();
  }
}, 60_000);

it("a marker in the message packed ahead, its list's spool folder deleted, is sent without the list", async () => {
  const h = agentHarness(SET);
  try {
    const src = h.src.path;
    const name = (i: number) => `${"n".repeat(200)}-${i}`;
    mkdirSync(join(src, "a"));
    mkdirSync(join(src, "b"));
    for (let i = 0; i < 1600; i++) writeFileSync(join(src, "a", name(i)), `a${i}`);
    await h.agent.scan(SET);
    // As a large set's list is journaled: in a spool file.
    const marker = await markerWithSpooledList(h, SET, "the-list");
    for (let i = 0; i < 1600; i++) writeFileSync(join(src, "b", name(i)), `b${i}`);
    await h.agent.scan(SET);

    // The cleaner runs while the first message is on the wire (the next one, holding the marker, is packed ahead meanwhile).
    const send = h.transport.send.bind(h.transport);
    let sends = 0;
    const firsts: number[] = [];
    h.transport.send = async (set, id, body, attributes) => {
      sends += 1;
      firsts.push(Number(/"seq":(\d+)/.exec(body)?.[1]));
      if (sends === 1) {
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setImmediate(resolve));
        rmSync(h.journal.spoolDir, { recursive: true, force: true });
      }
      return send(set, id, body, attributes);
    };
    await h.agent.drain(SET);
    await h.agent.drain(SET);
    expect(firsts.length).toBeGreaterThan(1);
    expect(firsts[1]).toBeLessThanOrEqual(marker.seq);
    const result = await readTaskResult(h.store, SET, marker.id);
    expect(result?.status).toBe("succeeded");
  } finally {
    await h.close();
  }
}, 120_000);

it("a marker skipped for good is named among the set's not-replicated entries (status), not silent", async () => {
  const h = agentHarness(SET);
  try {
    writeFileSync(join(h.src.path, "a.txt"), "a");
    await h.agent.scan(SET);
    const marker = await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
    const skipped = await skipRefusedRecord(h.journal, SET, marker.seq, "refused for good");
    expect(skipped?.paths).toEqual([`task ${marker.id}`]);
    expect(h.journal.skipped(SET)).toEqual([expect.objectContaining({ path: `task ${marker.id}`, reason: expect.stringContaining("did not run on the target") })]);
  } finally {
    await h.close();
  }
});
