// A refused payload in a message that stages several: the message is staged
// again without its record, so the stages still going must settle first and no
// further one may start, else the same keys upload twice, at once.
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Journal, type Change } from "../../agent/journal.ts";
import type { SkippedRecord } from "../../agent/poison.ts";
import { sendNext, STAGE_CONCURRENCY } from "../../agent/sender.ts";
import { parseMessage } from "../../contract/wire.ts";
import { DeliveryRefusedError, type StagedPayload, type Transport } from "../../agent/transport/transport.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "docs";

let state: ReturnType<typeof tempDir>;
let journal: Journal;

beforeEach(() => {
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
});

afterEach(() => {
  journal.close();
  state.remove();
});

/** A file whose content is spooled, `size` bytes long (sparse: the transport here never reads it). */
function spooled(path: string, size: number): Change {
  writeFileSync(join(journal.spoolDir, path), "");
  truncateSync(join(journal.spoolDir, path), size);
  return { op: "put", path, size, mode: 0o644, mtimeNs: "1", sha256: sha(path), content: { spool: path } };
}

/**
 * The first payload's first upload is refused once the message's first STAGE_CONCURRENCY uploads have begun; the
 * others' first uploads are held until that refusal has gone out. Every later upload is stored at once.
 */
class RefusesOne implements Transport {
  /** The seq of each upload begun, in order. */
  readonly started: number[] = [];
  /** The most uploads of one key going at once. */
  mostAtOnce = 0;
  readonly messages: string[][] = [];
  readonly #going = new Map<string, number>();
  readonly #held: (() => void)[] = [];
  #inFlight: () => void = () => undefined;
  readonly #allInFlight = new Promise<void>((resolve) => (this.#inFlight = resolve));
  #released: () => void = () => undefined;
  /** Resolves once the held uploads were let go. */
  readonly released = new Promise<void>((resolve) => (this.#released = resolve));

  releaseHeld(): void {
    for (const release of this.#held.splice(0)) release();
    this.#released();
  }

  async stage(payload: StagedPayload & { readonly seq?: number }): Promise<void> {
    const seq = payload.seq ?? 0;
    const first = !this.started.includes(seq);
    this.started.push(seq);
    const going = (this.#going.get(payload.key) ?? 0) + 1;
    this.#going.set(payload.key, going);
    this.mostAtOnce = Math.max(this.mostAtOnce, going);
    try {
      if (this.started.length === STAGE_CONCURRENCY) this.#inFlight();
      if (!first) return;
      if (seq === 1) {
        await this.#allInFlight;
        // The held uploads go once the sender skips the record (before it stages the message again), or once it
        // waits for them instead (nothing to see then: a while later).
        setTimeout(() => this.releaseHeld(), 100);
        throw new DeliveryRefusedError(`${payload.key} is malformed`);
      }
      if (this.started.length <= STAGE_CONCURRENCY) await new Promise<void>((resolve) => this.#held.push(resolve));
    } finally {
      this.#going.set(payload.key, (this.#going.get(payload.key) ?? 1) - 1);
    }
  }

  async send(_set: string, _id: string, body: string): Promise<void> {
    const message = parseMessage(body);
    if (!("records" in message)) throw new Error("not a message of records");
    this.messages.push(message.records.map((record) => `${record.op} ${"path" in record ? record.path : record.seq}`));
  }
}

it("starts no further upload after a refused payload, lets those going settle, and uploads no key twice at once", async () => {
  const files = ["f1", "f2", "f3", "f4", "f5", "f6"];
  journal.append(SET, files.map((path) => spooled(path, 2 * 1024 ** 2)));
  const transport = new RefusesOne();
  const skipped: number[] = [];
  const onSkipped = (_set: string, record: SkippedRecord) => {
    skipped.push(record.seq);
    transport.releaseHeld();
  };
  while ((await sendNext(journal, transport, SET, { compression: "none", onSkipped })).records > 0);
  // Uploads the sender left running would take f5 and f6 once let go.
  await transport.released;
  await new Promise((resolve) => setImmediate(resolve));

  expect(skipped).toEqual([1]);
  expect(transport.messages).toEqual([["skip 1", "put f2", "put f3", "put f4", "put f5", "put f6"]]);
  expect(transport.mostAtOnce).toBe(1);
  // The first round began f1..f4 and nothing more; the message without f1 staged only what that round had not
  // staged whole (same key, same sha256): f2..f4 upload once in all.
  expect(transport.started).toEqual([1, 2, 3, 4, 5, 6]);
});
