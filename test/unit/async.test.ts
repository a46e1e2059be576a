import { expect, it } from "vitest";
import { mapConcurrentUntilFailure, sharedUntilFailure } from "../../contract/async.ts";

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

it("mapConcurrentUntilFailure hands out no item after a failure and rejects once the calls in flight settled", async () => {
  const started: number[] = [];
  const settled: number[] = [];
  const releases: (() => void)[] = [];
  const mapping = mapConcurrentUntilFailure([1, 2, 3, 4, 5, 6], 3, async (item) => {
    started.push(item);
    if (item === 2) throw new Error("item 2 failed");
    await new Promise<void>((resolve) => releases.push(resolve));
    settled.push(item);
    return item;
  });
  let failed = false;
  const done = mapping.catch((error: unknown) => {
    failed = true;
    throw error;
  });
  // Items 1 and 3 are in flight: the failure waits for them, and nothing more starts.
  await new Promise((resolve) => setImmediate(resolve));
  expect(started).toEqual([1, 2, 3]);
  expect(failed).toBe(false);
  for (const release of releases.splice(0)) release();
  await expect(done).rejects.toThrow("item 2 failed");
  expect(settled).toEqual([1, 3]);
  expect(started).toEqual([1, 2, 3]);
});

it("mapConcurrentUntilFailure maps every item in order when none fails", async () => {
  expect(await mapConcurrentUntilFailure([3, 1, 2], 2, async (item) => item * 10)).toEqual([30, 10, 20]);
});
