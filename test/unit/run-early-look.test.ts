// `tidemark run` starts the process that looks at the sets' roots before it
// loads the agent's modules (run.ts earlyRootLook): that Node start was on the
// way to the first send. The start gets it (runtime.ts uses it or replaces it);
// a config the start never gets to leaves no such process behind.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { runCommand } from "../../agent/commands/run.ts";
import { RootLookProcess } from "../../agent/root-look-process.ts";
import { lookProcessPids } from "../support/look-process.ts";
import { tempDir } from "../support/tree.ts";

const startAgent = vi.hoisted(() => vi.fn());
vi.mock("../../agent/runtime.ts", () => ({ startAgent }));

let dir: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  dir?.remove();
  dir = undefined;
  startAgent.mockReset();
  await vi.waitFor(() => expect(lookProcessPids()).toEqual([]));
});

function configFile(config: unknown): string {
  dir = tempDir("tidemark-run-early-look-");
  for (const name of ["a", "b", "c", "d", "e"]) mkdirSync(join(dir.path, name));
  const file = join(dir.path, "tidemark.config.json");
  writeFileSync(file, typeof config === "string" ? config : JSON.stringify(config));
  return file;
}

const sets = (count: number) => ["a", "b", "c", "d", "e"].slice(0, count).map((name) => ({ name, path: name }));
const base = { queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state" };

it("hands the start a look process already running, made for the config's sets", async () => {
  const file = configFile({ ...base, sets: sets(5) });
  let given: { look: unknown; running: number[] } | undefined;
  startAgent.mockImplementation(async (_config: unknown, _log: unknown, options: { rootLook?: RootLookProcess }) => {
    given = { look: options.rootLook, running: lookProcessPids() };
    options.rootLook?.close();
    throw new Error("stand-in start");
  });
  await expect(runCommand.run({ config: file }, [])).rejects.toThrow("stand-in start");
  expect(given?.look).toBeInstanceOf(RootLookProcess);
  // Running before the start asked it anything.
  expect(given?.running).toHaveLength(1);
  // Five sets: six threads.
  expect((given?.look as RootLookProcess).fits(5)).toBe(true);
});

it("a config the schema refuses stops the command before the start, and the look process started early is closed", async () => {
  const file = configFile({ ...base, sets: sets(1), unknownKey: true });
  await expect(runCommand.run({ config: file }, [])).rejects.toThrow(/unknownKey/);
  expect(startAgent).not.toHaveBeenCalled();
});

it("a config file that is not JSON starts no look process early: loading it names the problem", async () => {
  const file = configFile("{ not json");
  await expect(runCommand.run({ config: file }, [])).rejects.toThrow(/tidemark\.config\.json/);
  expect(startAgent).not.toHaveBeenCalled();
});
