// A caller that stops reading (a `tidemark mirror` suspended with Ctrl-Z while the agent mirrors) had the agent buffer
// every progress event for as long as it ran. Once the answer's buffer is full only the latest progress event waits:
// what the agent holds for the caller stays bounded, and the result (then errors) still arrive whole when it reads.

import { request } from "node:http";
import { afterEach, expect, it } from "vitest";
import { controlSocketPath, startControlServer, type ControlServer } from "../../agent/control.ts";
import { tempDir } from "../support/tree.ts";

const EVENTS = 100_000;
const PADDING = "x".repeat(100);

const dirs: { remove(): void }[] = [];
let agent: ControlServer | undefined;
afterEach(async () => {
  await agent?.close();
  agent = undefined;
  for (const dir of dirs.splice(0)) dir.remove();
});

interface Answer {
  readonly bytes: number;
  readonly lines: { progress?: { i: number }; result?: unknown; error?: string }[];
}

/** Asks route and pauses the answer as soon as its head arrives; reads it whole once `resume` settles. */
function pausedCall(path: string, route: string, paused: () => void, resume: Promise<void>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: path, path: route, method: "POST", agent: false }, (res) => {
      res.pause();
      paused();
      let text = "";
      void resume.then(() => {
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () =>
          resolve({
            bytes: Buffer.byteLength(text),
            lines: text
              .split("\n")
              .filter((line) => line !== "")
              .map((line) => JSON.parse(line) as Answer["lines"][number]),
          }),
        );
        res.resume();
      });
    });
    req.on("error", reject);
    req.end("{}");
  });
}

async function pausedWhileProgressGoes(outcome: "result" | "error"): Promise<Answer> {
  const dir = tempDir();
  dirs.push(dir);
  const path = controlSocketPath(dir.path);
  let callerPaused!: () => void;
  const paused = new Promise<void>((resolve) => (callerPaused = resolve));
  let emittedAll!: () => void;
  const emitted = new Promise<void>((resolve) => (emittedAll = resolve));
  agent = await startControlServer(path, {
    "/mirror": async (_body, progress) => {
      await paused;
      for (let i = 0; i < EVENTS; i++) progress({ i, folder: PADDING });
      emittedAll();
      if (outcome === "error") throw new Error(`failed after ${EVENTS} events`);
      return { report: "r".repeat(200_000) };
    },
  });
  // The caller reads again only once the agent emitted everything (and queued its answer).
  return pausedCall(path, "/mirror", callerPaused, emitted.then(() => new Promise((resolve) => setImmediate(resolve))));
}

it("keeps only the latest progress event for a caller that does not read, and delivers the result whole", async () => {
  const answer = await pausedWhileProgressGoes("result");
  const progress = answer.lines.filter((line) => line.progress !== undefined);
  // Without the bound every event waited: over 10 MB. Now what the sockets took before the caller paused, and one more.
  expect(answer.bytes).toBeLessThan(2_000_000);
  expect(progress.length).toBeLessThan(EVENTS / 10);
  // The caller's view ends on the latest progress, then the result.
  expect(progress.at(-1)?.progress?.i).toBe(EVENTS - 1);
  expect(answer.lines.at(-1)).toEqual({ result: { report: "r".repeat(200_000) } });
});

it("delivers an error after the latest progress to a caller that did not read", async () => {
  const answer = await pausedWhileProgressGoes("error");
  expect(answer.bytes).toBeLessThan(2_000_000);
  expect(answer.lines.at(-2)?.progress?.i).toBe(EVENTS - 1);
  expect(answer.lines.at(-1)).toEqual({ error: `failed after ${EVENTS} events` });
});
