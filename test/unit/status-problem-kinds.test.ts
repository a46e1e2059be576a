// The state column of `tidemark status` named one kind per problem: a set
// with three files it cannot replicate read "NOT IN SYNC (skipped-path,
// skipped-path, skipped-path)", a long line of repeats that hid the other
// kinds among them on a tree with many hostile names.

import { expect, it } from "vitest";
import { problemKinds } from "../../agent/commands/status.ts";

it("names each kind once, in the order found, with its count when more than one", () => {
  const problems = ["skipped-path", "send-error", "skipped-path", "skipped-path"].map((kind) => ({ kind }));
  expect(problemKinds(problems)).toBe("skipped-path ×3, send-error");
  expect(problemKinds([{ kind: "agent-stopped" }])).toBe("agent-stopped");
  expect(problemKinds([])).toBe("");
});
