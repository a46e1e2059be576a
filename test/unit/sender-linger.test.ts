// Trickling changes share a message: a change arriving at an idle sender
// waits (lingerMs) for more. Nothing a user waits on waits for it: a marker,
// a backlog that pays for its own message, the agent stopping. The linger
// here is an hour, so a test that depended on it running out would time out.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { PACKED_ENOUGH_RECORDS } from "../../agent/set-sender.ts";
import { isMarkerMessage, parseMessage } from "../../contract/wire.ts";
import { eventually } from "../support/local-cloud.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "docs";
const HOUR_MS = 3_600_000;
let h: Harness;

beforeEach(async () => {
  h = agentHarness(SET, { monitorEnabled: true, lingerMs: HOUR_MS, rescanMs: HOUR_MS, watch: () => ({ close: async () => undefined }) });
  await h.agent.start();
  // The start's scan of the empty tree sent nothing: the sender is idle.
  await eventually(async () => expect(h.journal.sets.counters(SET).backlogRecords).toBe(0), 10_000, 10);
});

afterEach(() => h.close());

const recordsOf = (body: string) => {
  const message = parseMessage(body);
  return isMarkerMessage(message) ? [] : message.records.map((r) => ("path" in r ? `${r.op} ${r.path}` : r.op));
};

it("holds changes arriving one by one at an idle sender, and sends them in one message with the marker that hurries them", async () => {
  const before = h.transport.bodies.length;
  for (const name of ["a.txt", "b.txt", "c.txt"]) {
    writeFileSync(join(h.src.path, name), name);
    await h.agent.scan(SET);
    await eventually(async () => expect(h.agent.isLingering(SET)).toBe(true), 10_000, 5);
  }
  expect(h.transport.bodies.length).toBe(before);
  await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
  await eventually(async () => expect(h.journal.sets.counters(SET).backlogRecords).toBe(0), 10_000, 10);
  const sent = h.transport.bodies.slice(before);
  expect(sent).toHaveLength(1);
  expect(recordsOf(sent[0] ?? "")).toEqual(["put a.txt", "put b.txt", "put c.txt", "task"]);
});

it("does not linger when it tries again to send a marker whose send failed", async () => {
  writeFileSync(join(h.src.path, "a.txt"), "a");
  h.transport.failures.push(new Error("queue unreachable"));
  await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
  await eventually(async () => expect(h.journal.sets.counters(SET).backlogRecords).toBe(0), 20_000, 20);
  expect(h.transport.failures).toHaveLength(0);
});

it("sends without lingering once the backlog pays for its message", async () => {
  const before = h.transport.bodies.length;
  for (let i = 0; i < PACKED_ENOUGH_RECORDS; i++) writeFileSync(join(h.src.path, `f${String(i).padStart(2, "0")}.txt`), `file ${i}`);
  await h.agent.scan(SET);
  await eventually(async () => expect(h.journal.sets.counters(SET).backlogRecords).toBe(0), 10_000, 10);
  expect(h.transport.bodies.length).toBeGreaterThan(before);
});

it("stops at once while changes linger, keeping them journaled for the next start", async () => {
  writeFileSync(join(h.src.path, "late.txt"), "late");
  await h.agent.scan(SET);
  await eventually(async () => expect(h.agent.isLingering(SET)).toBe(true), 10_000, 5);
  await h.agent.stop();
  expect(h.journal.sets.counters(SET).backlogRecords).toBe(1);
});

it("drains without lingering (what a command run without a running agent does before it exits)", async () => {
  writeFileSync(join(h.src.path, "now.txt"), "now");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect((await h.store.get("data/docs/now.txt"))?.body.toString()).toBe("now");
});
