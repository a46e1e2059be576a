// The local poller's heartbeat: no extend lands after its batch ends or after
// the handler released a message, and what the queue refused is reported.

import type { ChangeMessageVisibilityBatchCommand, ChangeMessageVisibilityBatchCommandOutput } from "@aws-sdk/client-sqs";
import { expect, it } from "vitest";
import { VisibilityHeartbeat, type VisibilitySender } from "../../lambdas/local/visibility-heartbeat.ts";
import { eventually } from "../support/local-cloud.ts";

/** A queue whose answers to extends the test gives, one at a time. */
class HeldQueue implements VisibilitySender {
  readonly sent: string[][] = [];
  #answer: ((output: ChangeMessageVisibilityBatchCommandOutput) => void) | undefined;

  send(command: ChangeMessageVisibilityBatchCommand): Promise<ChangeMessageVisibilityBatchCommandOutput> {
    this.sent.push((command.input.Entries ?? []).map((entry) => entry.ReceiptHandle ?? ""));
    return new Promise((resolve) => (this.#answer = resolve));
  }

  answer(output: ChangeMessageVisibilityBatchCommandOutput = { $metadata: {}, Successful: [], Failed: [] }): void {
    this.#answer?.(output);
    this.#answer = undefined;
  }
}

/** Whether the promise has settled, after everything already queued ran. */
async function settled(promise: Promise<void>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

const batch = [{ ReceiptHandle: "r1" }, { ReceiptHandle: "r2" }];

it("the batch's end waits for an extend on its way, and no extend is sent after it", async () => {
  const queue = new HeldQueue();
  const heartbeat = new VisibilityHeartbeat({ sqs: queue, queueUrl: "q", visibilityTimeoutSeconds: 0.03 });
  const stop = heartbeat.keep(batch);
  await eventually(async () => expect(queue.sent).toEqual([["r1", "r2"]]), 5_000, 5);
  const stopped = stop();
  expect(await settled(stopped)).toBe(false);
  queue.answer();
  await stopped;
  await new Promise((resolve) => setTimeout(resolve, 60));
  expect(queue.sent).toHaveLength(1);
});

it("a release waits for an extend on its way, and later extends leave the released message out", async () => {
  const queue = new HeldQueue();
  const heartbeat = new VisibilityHeartbeat({ sqs: queue, queueUrl: "q", visibilityTimeoutSeconds: 0.03 });
  const stop = heartbeat.keep(batch);
  await eventually(async () => expect(queue.sent).toEqual([["r1", "r2"]]), 5_000, 5);
  const released = heartbeat.release("r1");
  expect(await settled(released)).toBe(false);
  queue.answer();
  await released;
  await eventually(async () => expect(queue.sent.at(-1)).toEqual(["r2"]), 5_000, 5);
  queue.answer();
  await stop();
});

it("messages the queue did not keep in flight are reported", async () => {
  const queue = new HeldQueue();
  const errors: Error[] = [];
  const heartbeat = new VisibilityHeartbeat({ sqs: queue, queueUrl: "q", visibilityTimeoutSeconds: 0.03, onError: (error) => errors.push(error) });
  const stop = heartbeat.keep(batch);
  await eventually(async () => expect(queue.sent).toHaveLength(1), 5_000, 5);
  queue.answer({ $metadata: {}, Successful: [{ Id: "0" }], Failed: [{ Id: "1", Code: "ReceiptHandleIsInvalid", Message: "gone", SenderFault: true }] });
  await stop();
  expect(errors.map((error) => [error.name, error.message])).toEqual([
    ["VisibilityExtendError", "could not keep 1 of 2 message(s) in flight (they may be handed out again while handled): ReceiptHandleIsInvalid gone"],
  ]);
});
