// A send that fails again and again (not the transport's retries, which name
// theirs: anything else a turn of the send loop throws) is named in status as
// the set's lastSendError, not left as a backlog that grows with no reason;
// the next send that goes through clears it.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { eventually } from "../support/local-cloud.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "docs";
const HOUR_MS = 3_600_000;
let h: Harness;

afterEach(() => h.close());

it("names a send failure that repeats as the set's lastSendError until a send goes through", async () => {
  h = agentHarness(SET, { monitorEnabled: true, rescanMs: HOUR_MS, watch: () => ({ close: async () => undefined }) });
  await h.agent.start();
  await eventually(async () => expect(h.journal.sets.counters(SET).backlogRecords).toBe(0), 10_000, 10);
  expect(h.journal.sets.counters(SET).lastSendError).toBeNull();

  h.transport.failures.push(new Error("first"), new Error("packing failed: no such thing"), new Error("third"));
  writeFileSync(join(h.src.path, "a.txt"), "a");
  await h.agent.scan(SET);
  // The first failure alone is not named (the next try may well go through); the second is.
  await eventually(async () => expect(h.journal.sets.counters(SET).lastSendError).toBe("packing failed: no such thing"), 20_000, 5);
  await eventually(async () => expect(h.journal.sets.counters(SET).backlogRecords).toBe(0), 20_000, 10);
  expect(h.journal.sets.counters(SET).lastSendError).toBeNull();
});
