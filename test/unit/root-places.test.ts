// Commands that must look at the sets' roots (the agent's start, doctor,
// accept-root, restore's check of --to) do it through the time-limited root
// look: a root on a hard-mounted network file system whose server went away
// fails, or is warned of, instead of hanging the command. The stand-in look
// never answers for the hung root, and the time limit of a look at it passes
// at once (a deadline the test fires); every other look is the real one.

import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { acceptRoot, AcceptRootError } from "../../agent/accept-root.ts";
import { runDoctor } from "../../agent/doctor.ts";
import { loadConfig } from "../../agent/config.ts";
import { Journal } from "../../agent/journal.ts";
import { checkRoots, realPaths } from "../../agent/root-places.ts";
import { hungAt } from "../support/hung-root.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
let file: string;
beforeEach(() => {
  dir = tempDir("tidemark-root-places-");
  file = join(dir.path, "tidemark.config.json");
  for (const name of ["hung", "www", "db"]) mkdirSync(join(dir.path, name));
});
afterEach(() => dir.remove());

const write = (sets: unknown[]) => writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "state", sets }));

it("refuses to start on a set not replicated yet whose root does not answer, naming it", async () => {
  write([
    { name: "hung", path: "hung" },
    { name: "www", path: "www" },
  ]);
  const { look, asked, options } = hungAt(join(dir.path, "hung"));
  await expect(checkRoots(loadConfig(file), () => false, look, options)).rejects.toThrow(
    new RegExp(`^set "hung": root ${join(dir.path, "hung")} did not answer within 10 s \\(hung network file system\\?\\)$`),
  );
  expect(asked).toEqual([join(dir.path, "hung")]);
});

it("starts with a replicated set whose root does not answer (the agent holds it), and still refuses other sets overlapping through a symlink", async () => {
  write([
    { name: "hung", path: "hung" },
    { name: "www", path: "www" },
  ]);
  const { look, options } = hungAt(join(dir.path, "hung"));
  const unanswered = await checkRoots(loadConfig(file), (set) => set === "hung", look, options);
  expect(unanswered.map((error) => error.message)).toEqual([`root ${join(dir.path, "hung")} did not answer within 10 s (hung network file system?)`]);
  symlinkSync(join(dir.path, "www"), join(dir.path, "link"));
  write([
    { name: "hung", path: "hung" },
    { name: "www", path: "www" },
    { name: "alias", path: "link" },
  ]);
  await expect(checkRoots(loadConfig(file), (set) => set === "hung", look, options)).rejects.toThrow(/sets "www" and "alias" are the same folder \(.*link -> .*www\)/);
});

it("doctor fails the config check of a new set whose root does not answer, and returns", async () => {
  write([{ name: "hung", path: "hung" }]);
  const { look, options } = hungAt(join(dir.path, "hung"));
  const checks = await runDoctor(file, { rootLook: look, rootWatch: options });
  expect(checks.find((check) => check.name === "config")).toEqual({ name: "config", level: "fail", detail: expect.stringMatching(/set "hung": root .*hung did not answer within 10 s/) as unknown });
});

it("judges --to by the paths as written where a root does not answer, and by real path elsewhere", async () => {
  symlinkSync(join(dir.path, "www"), join(dir.path, "link"));
  const { look, options } = hungAt(join(dir.path, "hung"));
  const { realOf, unanswered } = await realPaths([join(dir.path, "hung", "restored"), join(dir.path, "link", "restored")], look, options);
  expect(realOf(join(dir.path, "hung", "restored"))).toBe(join(dir.path, "hung", "restored"));
  expect(realOf(join(dir.path, "link", "restored"))).toMatch(/\/www\/restored$/);
  expect(unanswered.map((error) => error.root)).toEqual([join(dir.path, "hung", "restored")]);
});

it("accept-root of a root that does not answer fails clearly and records nothing", async () => {
  const state = join(dir.path, "state");
  mkdirSync(state);
  const { look, options } = hungAt(join(dir.path, "hung"));
  const journal = Journal.open(state, { lookRoot: look });
  try {
    const spec = { name: "hung", root: join(dir.path, "hung"), exclude: [] };
    await expect(acceptRoot(journal, spec, options)).rejects.toThrow(AcceptRootError);
    await expect(acceptRoot(journal, spec, options)).rejects.toThrow(
      new RegExp(`^set "hung": cannot accept: root ${spec.root} did not answer within 10 s \\(hung network file system\\?\\); nothing was recorded`),
    );
    expect(journal.roots.of("hung")).toBeUndefined();
    // The same look accepts a root that answers.
    expect((await acceptRoot(journal, { name: "www", root: join(dir.path, "www"), exclude: [] }, options)).identity.realPath).toMatch(/\/www$/);
  } finally {
    journal.close();
  }
});
