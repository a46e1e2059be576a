// The in-memory transport the agent tests run on passes the transport
// contract, and forgets a deduplication id after SQS's 5 minutes.

import { expect, it } from "vitest";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { DEDUPLICATION_WINDOW_MS, MemoryTransport } from "../support/memory-transport.ts";
import { transportContract } from "../support/transport-contract.ts";

function memoryTransport(): MemoryTransport {
  const store = new MemoryStore();
  return new MemoryTransport(new Applier({ store, log: () => {} }), store);
}

transportContract("in-memory fake", async () => {
  const transport = memoryTransport();
  let next = 0;
  return {
    transport,
    store: transport.store,
    async receive(count) {
      const received = transport.delivered.slice(next, Math.max(next + count, transport.delivered.length));
      next += received.length;
      return received;
    },
    async close() {},
  };
});

it("delivers a deduplication id again once the 5-minute window has passed, as SQS does", async () => {
  const transport = memoryTransport();
  let now = 1_000_000;
  transport.now = () => now;
  await transport.send("s", "s:1-1", "first");
  now += DEDUPLICATION_WINDOW_MS - 1;
  await transport.send("s", "s:1-1", "inside the window");
  now += 1;
  await transport.send("s", "s:1-1", "after the window");
  expect(transport.delivered.map((m) => m.body)).toEqual(["first", "after the window"]);
  // Every send was accepted: the queue answers a duplicate with success.
  expect(transport.bodies).toEqual(["first", "inside the window", "after the window"]);
});

it("delivers a message again when the applier failed on it: the resend stands for the queue's redelivery", async () => {
  const transport = memoryTransport();
  const apply = transport.applier.applyMessage.bind(transport.applier);
  let failures = 1;
  transport.applier.applyMessage = async (incoming, invocation) => {
    if (failures-- > 0) throw new Error("the invocation died");
    return apply(incoming, invocation);
  };
  await expect(transport.send("s", "s:1-1", "once")).rejects.toThrow("the invocation died");
  await transport.send("s", "s:1-1", "once");
  await transport.send("s", "s:1-1", "once");
  expect(transport.delivered.map((m) => m.body)).toEqual(["once", "once"]);
  expect(transport.outcomes).toHaveLength(1);
});
