// The control socket: requests and progress between the CLI and the running
// agent, a stale socket left by a killed agent, and long state dir paths.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { callControl, ControlError, controlSocketPath, NoAgentError, startControlServer } from "../../agent/control.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => dir.remove());

it("answers a request with its progress and result, and an error as an error", async () => {
  const path = controlSocketPath(dir.path);
  const server = await startControlServer(path, {
    "/echo": async (body, progress) => {
      progress({ step: 1 });
      progress({ step: 2 });
      return { got: body };
    },
    "/fail": async () => {
      throw new Error("no such set");
    },
  });
  try {
    const events: unknown[] = [];
    expect(await callControl(path, "/echo", { set: "docs" }, (e) => events.push(e))).toEqual({ got: { set: "docs" } });
    expect(events).toEqual([{ step: 1 }, { step: 2 }]);
    await expect(callControl(path, "/fail", {})).rejects.toThrow(ControlError);
    await expect(callControl(path, "/nope", {})).rejects.toThrow(/no such request POST \/nope/);
    // A second agent on the same state dir is refused.
    await expect(startControlServer(path, {})).rejects.toThrow(/another agent is running on this state dir/);
  } finally {
    await server.close();
  }
  await expect(callControl(path, "/echo", {})).rejects.toThrow(NoAgentError);
});

it("replaces a socket file nobody listens on (left by a killed agent)", async () => {
  const path = controlSocketPath(dir.path);
  writeFileSync(path, "");
  const server = await startControlServer(path, { "/ping": async () => "pong" });
  try {
    expect(await callControl(path, "/ping", {})).toBe("pong");
  } finally {
    await server.close();
  }
});

it("keeps the socket path short enough for a long state dir", () => {
  const long = join(dir.path, "a".repeat(120));
  const path = controlSocketPath(long);
  expect(Buffer.byteLength(path)).toBeLessThanOrEqual(100);
  expect(controlSocketPath(long)).toBe(path);
  expect(controlSocketPath(`${long}b`)).not.toBe(path);
  expect(controlSocketPath(dir.path)).toBe(join(dir.path, "control.sock"));
});
