import { expect, it } from "vitest";
import { sharedUntilFailure } from "../../contract/async.ts";

it("shares the first call's promise, and starts again after a failure", async () => {
  let starts = 0;
  const outcomes = [new Error("unreachable"), "opened"];
  const open = sharedUntilFailure(async () => {
    starts += 1;
    const outcome = outcomes.shift();
    if (outcome instanceof Error) throw outcome;
    return outcome;
  });
  // Two callers at once share the one failed start.
  const [first, second] = await Promise.allSettled([open(), open()]);
  expect([first.status, second.status, starts]).toEqual(["rejected", "rejected", 1]);
  // The next call starts again; once it succeeds, every later call gets that result without starting.
  expect(await open()).toBe("opened");
  expect(await open()).toBe("opened");
  expect(starts).toBe(2);
});
