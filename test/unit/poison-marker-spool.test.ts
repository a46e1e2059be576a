// A marker skipped for good must not leave its spooled digest list behind: the skip record no longer names the file.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { skipRefusedRecord } from "../../agent/poison.ts";
import { markerWithSpooledList } from "../support/spooled-marker.ts";
import { agentHarness } from "../support/harness.ts";

const SET = "app";

it("removes a skipped marker's spooled digest list", async () => {
  const h = agentHarness(SET);
  try {
    writeFileSync(join(h.src.path, "a.txt"), "a");
    await h.agent.scan(SET);
    const marker = await markerWithSpooledList(h, SET, "the-list");
    await skipRefusedRecord(h.journal, SET, marker.seq, "refused for good");
    await h.agent.drain(SET);
    expect(h.journal.sets.counters(SET).backlogRecords).toBe(0);
    expect(existsSync(join(h.journal.spoolDir, "the-list"))).toBe(false);
  } finally {
    await h.close();
  }
}, 60_000);
