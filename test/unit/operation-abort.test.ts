// A stopping agent ends the waits of its operations on the target: a
// recovery's verification behind refused messages (another host owns the
// set) waited up to 10 minutes for a target that never moves, and kept
// `tidemark run` alive that long after SIGINT.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { recoverSet } from "../../agent/operations.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "www";
let h: Harness | undefined;
afterEach(() => h?.close());

it("a recovery waiting on a target that never answers ends when the agent's signal aborts, not after the stall", async () => {
  h = agentHarness(SET);
  writeFileSync(join(h.src.path, "index.html"), "<h1>hi</h1>");
  await h.agent.start();
  await h.agent.drain(SET);
  const controller = new AbortController();
  let polls = 0;
  const waiting = recoverSet(
    {
      ...h.operations(),
      // The verification's report never comes (its messages are refused), and the target's status never moves.
      readReport: async () => {
        polls += 1;
        if (polls === 3) controller.abort();
        return undefined;
      },
      timeoutMs: 60 * 60_000,
      stallMs: 60 * 60_000,
      signal: controller.signal,
    },
    SET,
    "new journal generation",
    "diff",
    "report",
  );
  await expect(waiting).rejects.toMatchObject({ name: "AbortError" });
  expect(polls).toBe(3);
}, 20_000);
