// A route's result (or error) that JSON.stringify cannot serialise (a BigInt, a cycle) was an unhandled rejection in
// the agent and the caller heard nothing. It is now an error answer naming the route and why (UnsendableAnswerError),
// and the agent goes on serving.

import { afterEach, expect, it } from "vitest";
import { callControl, ControlError, controlSocketPath, startControlServer, UnsendableAnswerError, type ControlServer } from "../../agent/control.ts";
import { tempDir } from "../support/tree.ts";

const dirs: { remove(): void }[] = [];
let agent: ControlServer | undefined;
afterEach(async () => {
  await agent?.close();
  agent = undefined;
  for (const dir of dirs.splice(0)) dir.remove();
});

it("answers a result or error JSON cannot carry with a named error, and keeps serving", async () => {
  const dir = tempDir();
  dirs.push(dir);
  const path = controlSocketPath(dir.path);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const cycle: Record<string, unknown> = { name: "loop" };
    cycle.self = cycle;
    agent = await startControlServer(path, {
      "/bigint": async () => ({ bytes: 10n }),
      "/cycle": async () => cycle,
      "/ping": async () => "pong",
    });
    const bigint = callControl(path, "/bigint", {});
    await expect(bigint).rejects.toThrow(UnsendableAnswerError);
    await expect(bigint).rejects.toThrow(/the agent's answer to \/bigint could not be sent as JSON \(.*BigInt/);
    const cyclic = callControl(path, "/cycle", {});
    await expect(cyclic).rejects.toThrow(ControlError);
    await expect(cyclic).rejects.toThrow(/answer to \/cycle could not be sent as JSON \(.*circular/);
    expect(await callControl(path, "/ping", {})).toBe("pong");
    // A turn for any rejection left unhandled to be reported.
    await new Promise((resolve) => setImmediate(resolve));
    expect(unhandled).toEqual([]);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

it("drops a progress event emitted after the answer ended, unserialised: one JSON cannot carry throws nothing then", async () => {
  const dir = tempDir();
  dirs.push(dir);
  const path = controlSocketPath(dir.path);
  let late: ((event: unknown) => void) | undefined;
  agent = await startControlServer(path, {
    "/work": async (_body, progress) => {
      late = progress;
      return "done";
    },
  });
  expect(await callControl(path, "/work", {})).toBe("done");
  // As a timer or an emitter left behind by the route would, after its answer: not inside the route, so a throw
  // here would be an uncaught exception, which ends the agent.
  expect(() => late?.({ bytes: 10n })).not.toThrow();
  expect(await callControl(path, "/work", {})).toBe("done");
});
