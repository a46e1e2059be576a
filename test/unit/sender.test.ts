import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { stagingKey } from "../../contract/layout.ts";
import { barrierScan } from "../../agent/scan.ts";
import { sendNext, STAGE_CONCURRENCY } from "../../agent/sender.ts";
import type { StagedPayload, Transport } from "../../agent/transport/transport.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";

/** A transport whose stage calls wait until released, counting how many are in flight. */
class GatedTransport implements Transport {
  readonly events: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failKey: string | undefined;
  readonly #waiting: (() => void)[] = [];

  async stage(payload: StagedPayload): Promise<void> {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.events.push(`stage ${payload.key}`);
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.inFlight -= 1;
    if (payload.key === this.failKey) throw new Error(`staging ${payload.key} failed`);
  }

  async send(): Promise<void> {
    this.events.push("send");
  }

  /** Lets every stage call waiting now finish; answers how many there were. */
  release(): number {
    const waiting = this.#waiting.splice(0);
    for (const resolve of waiting) resolve();
    return waiting.length;
  }
}

let src: ReturnType<typeof tempDir>;
let state: ReturnType<typeof tempDir>;
let journal: Journal;

beforeEach(async () => {
  src = tempDir("tidemark-src-");
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
  // Too large to travel inline, small enough that one message names them all.
  for (let i = 0; i < 6; i++) writeFileSync(join(src.path, `large-${i}.bin`), randomBytes(300 * 1024));
  await barrierScan(journal, { name: SET, root: src.path, exclude: [] });
});

afterEach(() => {
  journal.close();
  src.remove();
  state.remove();
});

/** Releases stage calls as they come until the send settles. */
async function settle(transport: GatedTransport, sending: Promise<unknown>): Promise<void> {
  let done = false;
  const finished = sending.then(
    () => (done = true),
    () => (done = true),
  );
  while (!done) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    transport.release();
  }
  await finished;
}

it("stages a message's payloads a few at a time, and sends the message only once all are staged", async () => {
  const transport = new GatedTransport();
  const sending = sendNext(journal, transport, SET, { compression: "none" });
  await settle(transport, sending);
  const result = await sending;
  expect(result.records).toBe(6);
  expect(transport.events.filter((e) => e.startsWith("stage"))).toHaveLength(6);
  expect(transport.events.at(-1)).toBe("send");
  expect(transport.maxInFlight).toBe(STAGE_CONCURRENCY);
  expect(journal.counters(SET).backlogRecords).toBe(0);
});

it("sends nothing, and keeps every record, when one payload fails to stage", async () => {
  const transport = new GatedTransport();
  const third = journal.pending(SET, 0, 10)[2];
  if (third?.op !== "put") throw new Error("expected the third record to be a put");
  transport.failKey = stagingKey(SET, third.seq, third.sha256);
  const sending = sendNext(journal, transport, SET, { compression: "none" });
  await settle(transport, sending);
  await expect(sending).rejects.toThrow(/staging .* failed/);
  expect(transport.events).not.toContain("send");
  expect(journal.counters(SET).backlogRecords).toBe(6);
});
