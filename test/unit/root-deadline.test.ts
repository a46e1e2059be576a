// A look's time limit (root-watch.ts) is a hung file system's, not the
// agent's own: an answer that came while the agent's thread was busy past the
// limit (a long synchronous transaction) is taken before the limit counts,
// and a limit whose timer fired late gives the look its time again, so a
// healthy root is not held root-unresponsive for the agent's own pause. A look
// that truly does not answer still runs out.

import { stat } from "node:fs/promises";
import { expect, it } from "vitest";
import { answerWithin, RootUnansweredError } from "../../agent/root-watch.ts";
import { tempDir } from "../support/tree.ts";

/** Holds this thread, as a long synchronous transaction of the agent would. */
function busy(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

it("takes a look's answer that came while the agent's own thread was busy past the limit", async () => {
  const base = tempDir("tidemark-root-deadline-");
  try {
    // The stat is answered by the thread pool at once; the limit's timer expires while this thread is busy.
    const looked = answerWithin(stat(base.path), base.path, { timeoutMs: 20 });
    busy(300);
    await expect(looked).resolves.toMatchObject({ ino: expect.any(Number) });
  } finally {
    base.remove();
  }
});

it("gives a look of several steps its time again when the agent's thread was busy past the limit", async () => {
  const base = tempDir("tidemark-root-deadline-");
  try {
    // The second step (a realpath after the stat, say) is asked only once the first's answer is read, after the pause.
    const steps = stat(base.path).then((st) => new Promise<typeof st>((resolve) => setTimeout(() => resolve(st), 5)));
    const looked = answerWithin(steps, base.path, { timeoutMs: 20 });
    busy(1_300);
    await expect(looked).resolves.toMatchObject({ ino: expect.any(Number) });
  } finally {
    base.remove();
  }
});

it("still gives up on a look that does not answer", async () => {
  await expect(answerWithin(new Promise(() => undefined), "/mnt/gone", { timeoutMs: 20 })).rejects.toBeInstanceOf(RootUnansweredError);
});
