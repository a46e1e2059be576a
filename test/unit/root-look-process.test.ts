// The agent looks at its sets' roots in a child process (root-look-process.ts):
// what it answers is what the agent's own look would (errors with their codes,
// which tell the holds apart), and it never keeps the agent's process alive: an
// agent that stops exits, whatever its looks are doing.

import { execFile } from "node:child_process";
import { mkdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, expect, it, vi } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { Journal } from "../../agent/journal.ts";
import { createLogger } from "../../agent/log.ts";
import { RootLookProcess } from "../../agent/root-look-process.ts";
import { startAgent } from "../../agent/runtime.ts";
import { RootLookError } from "../../agent/set-roots.ts";
import { acquireStateLock, StateLockedError } from "../../agent/state-lock.ts";
import { agentHarness } from "../support/harness.ts";
import { lookProcessPids } from "../support/look-process.ts";
import { tempDir } from "../support/tree.ts";

let base: ReturnType<typeof tempDir> | undefined;
let look: RootLookProcess | undefined;

afterEach(() => {
  look?.close();
  base?.remove();
  look = undefined;
  base = undefined;
});

it("answers stats, real paths, emptiness and presence as the file system does, errors with their codes", async () => {
  base = tempDir("tidemark-root-look-");
  const root = join(base.path, "root");
  const empty = join(base.path, "empty");
  mkdirSync(root);
  mkdirSync(empty);
  writeFileSync(join(root, "a.txt"), "alpha");
  symlinkSync(root, join(base.path, "link"));
  look = new RootLookProcess(2);
  const st = await look.stat(join(base.path, "link"));
  const real = statSync(root, { bigint: true });
  expect({ dev: st.dev, ino: st.ino, birthtimeNs: st.birthtimeNs, directory: st.isDirectory() }).toEqual({ dev: real.dev, ino: real.ino, birthtimeNs: real.birthtimeNs, directory: true });
  expect(await look.realpath(join(base.path, "link"))).toBe(root);
  expect(await look.isEmpty(root)).toBe(false);
  expect(await look.isEmpty(empty)).toBe(true);
  expect(await look.exists(join(root, "a.txt"))).toBe(true);
  expect(await look.exists(join(root, "b.txt"))).toBe(false);
  await expect(look.stat(join(base.path, "gone"))).rejects.toMatchObject({ code: "ENOENT" });
  await expect(look.isEmpty(join(root, "a.txt"))).rejects.toMatchObject({ code: "ENOTDIR" });
  look.close();
  await expect(look.stat(root)).rejects.toThrow(/the agent stopped/);
});

/** Runs a module script with RootLookProcess imported, in a process of its own: what it printed. */
async function inProcess(body: string): Promise<string> {
  const module = new URL("../../agent/root-look-process.ts", import.meta.url).href;
  const script = `const { RootLookProcess } = await import(${JSON.stringify(module)}); ${body}`;
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script]);
  return stdout.trim();
}

it("does not keep the agent's process alive once no look waits: a process that looked exits by itself", async () => {
  base = tempDir("tidemark-root-look-exit-");
  expect(await inProcess(`const look = new RootLookProcess(1); const st = await look.stat(${JSON.stringify(base.path)}); console.log(st.isDirectory());`)).toBe("true");
});

it("closed with a look outstanding (the agent stops), the look fails at once and the process exits", async () => {
  base = tempDir("tidemark-root-look-close-");
  const body = `const look = new RootLookProcess(1); const looking = look.stat(${JSON.stringify(base.path)}); look.close(); console.log(await looking.then(() => "answered", (error) => error.message));`;
  expect(await inProcess(body)).toBe("the agent stopped");
});

/** The pid of this process's root look process. */
function lookProcessPid(): number {
  const [pid] = lookProcessPids();
  if (pid === undefined) throw new Error("no root look process found");
  return pid;
}

it("a look whose process ends before it answers (killed, out of memory) is asked again of a new process", async () => {
  base = tempDir("tidemark-root-look-killed-");
  look = new RootLookProcess(1);
  await look.stat(base.path);
  const pid = lookProcessPid();
  const looking = look.stat(base.path);
  process.kill(pid, "SIGKILL");
  expect((await looking).isDirectory()).toBe(true);
});

it("a look that failed itself (its process could not start or ended) holds the set as not answering, not as missing", async () => {
  base = tempDir("tidemark-root-look-failed-");
  const root = join(base.path, "root");
  mkdirSync(root);
  const failed = () => Promise.reject(new RootLookError("the root look process ended (SIGKILL)"));
  const journal = Journal.open(join(base.path), { lookRoot: { stat: failed } });
  try {
    expect(await journal.roots.inspect("data", root)).toMatchObject({ ok: false, state: "root-unresponsive", found: "no answer: the root look process ended (SIGKILL)" });
  } finally {
    journal.close();
  }
  const journal2 = Journal.open(join(base.path), { lookRoot: { isEmpty: failed } });
  try {
    expect(await journal2.roots.inspect("data", root, { deleting: true })).toMatchObject({ ok: false, state: "root-unresponsive" });
  } finally {
    journal2.close();
  }
});

it("a set held empty stays held empty when a look fails itself: only the entries it knew coming back end that hold", async () => {
  base = tempDir("tidemark-root-look-empty-");
  const root = join(base.path, "root");
  mkdirSync(root);
  writeFileSync(join(root, "a.txt"), "alpha");
  let failing = false;
  const stat = async (path: string) => {
    if (failing) throw new RootLookError("the root look process ended (SIGKILL)");
    return statSync(path, { bigint: true });
  };
  const harness = agentHarness("data", { sets: [{ name: "data", root, exclude: [] }] }, { journal: { lookRoot: { stat } } });
  try {
    await harness.agent.start();
    await harness.agent.drain("data");
    rmSync(join(root, "a.txt"));
    expect((await harness.agent.checkRoot("data"))?.state).toBe("root-empty");
    failing = true;
    expect((await harness.agent.checkRoot("data"))?.state).toBe("root-empty");
    expect(harness.journal.roots.held("data")?.state).toBe("root-empty");
  } finally {
    await harness.close();
  }
});

it("is what the journal's root checks ask when the agent gives it (its methods are a class's, not own fields)", async () => {
  base = tempDir("tidemark-root-look-");
  const root = join(base.path, "root");
  mkdirSync(root);
  writeFileSync(join(root, "a.txt"), "alpha");
  const asked: string[] = [];
  // The process look, counting what it is asked: the agent gives the journal such an instance (runtime.ts).
  class CountingLook extends RootLookProcess {
    override stat(path: string) {
      asked.push(`stat ${path}`);
      return super.stat(path);
    }
    override realpath(path: string) {
      asked.push(`realpath ${path}`);
      return super.realpath(path);
    }
  }
  const counting = new CountingLook(1);
  look = counting;
  const journal = Journal.open(join(base.path, "state"), { lookRoot: counting });
  try {
    const first = await journal.roots.inspect("s", root);
    expect(first.ok).toBe(true);
    expect(asked).toEqual([`stat ${root}`, `realpath ${root}`]);
    // The recorded folder found again: its real path is the recorded one, one look (the stat) before each batch.
    if (first.ok) journal.roots.record("s", root, first.identity);
    asked.length = 0;
    expect(await journal.roots.inspect("s", root)).toMatchObject({ ok: true, identity: { realPath: root } });
    expect(asked).toEqual([`stat ${root}`]);
  } finally {
    journal.close();
  }
});

it("started early, its process runs before any look (its start overlaps the caller's), and it says which roots it fits", async () => {
  base = tempDir("tidemark-root-look-start-");
  look = new RootLookProcess(3).start();
  expect(lookProcessPids()).toHaveLength(1);
  expect((await look.stat(base.path)).isDirectory()).toBe(true);
  // The same process answered: started once.
  expect(lookProcessPids()).toHaveLength(1);
  // 4 threads at least, one more than its roots beyond that.
  expect([look.fits(1), look.fits(3), look.fits(4)]).toEqual([true, true, false]);
  look.close();
  expect(look.start()).toBe(look);
  await vi.waitFor(() => expect(lookProcessPids()).toEqual([]));
});

it("the start uses a look process the caller started if it fits the config's roots, else closes it unasked; closed either way when the start fails", async () => {
  const dir = tempDir("tidemark-root-look-given-");
  base = dir;
  const roots = ["a", "b", "c", "d"].map((name) => join(dir.path, name));
  const [first = ""] = roots;
  for (const root of roots) mkdirSync(root);
  const file = join(dir.path, "tidemark.config.json");
  const configFor = (count: number) => {
    writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: roots.slice(0, count).map((root) => ({ name: root.slice(-1), path: root })) }));
    return loadConfig(file);
  };
  const asked: string[] = [];
  class CountingLook extends RootLookProcess {
    override stat(path: string) {
      asked.push(path);
      return super.stat(path);
    }
  }
  const log = createLogger({ json: true, level: "error", write: () => undefined });
  // The state folder held by this process: the start fails right after its check of the roots.
  const config = configFor(1);
  const lock = acquireStateLock(config.stateDir, "tidemark test");
  try {
    const fitting = new CountingLook(1).start();
    await expect(startAgent(config, log, { rootLook: fitting })).rejects.toThrow(StateLockedError);
    expect(asked).toEqual([first]);
    await expect(fitting.stat(first)).rejects.toThrow(/the agent stopped/);
    asked.length = 0;
    // Four sets need 5 threads: a process made for one root has 4.
    const small = new CountingLook(1).start();
    await expect(startAgent(configFor(4), log, { rootLook: small })).rejects.toThrow(StateLockedError);
    expect(asked).toEqual([]);
    await expect(small.stat(first)).rejects.toThrow(/the agent stopped/);
  } finally {
    lock.release();
  }
  await vi.waitFor(() => expect(lookProcessPids()).toEqual([]));
});

it("the look before a batch (deleting) reads the stat and the folder's emptiness in one round trip, each answered as alone", async () => {
  base = tempDir("tidemark-root-look-one-trip-");
  const root = join(base.path, "root");
  const empty = join(base.path, "empty");
  mkdirSync(root);
  mkdirSync(empty);
  writeFileSync(join(root, "a.txt"), "alpha");
  const asked: string[] = [];
  class CountingLook extends RootLookProcess {
    override stat(path: string) {
      asked.push("stat");
      return super.stat(path);
    }
    override isEmpty(path: string) {
      asked.push("isEmpty");
      return super.isEmpty(path);
    }
    override statAndEmpty(path: string) {
      asked.push("statAndEmpty");
      return super.statAndEmpty(path);
    }
  }
  const counting = new CountingLook(1);
  look = counting;
  const both = await counting.statAndEmpty(root);
  expect([both.stat.isDirectory(), both.stat.ino, await both.empty]).toEqual([true, statSync(root, { bigint: true }).ino, false]);
  expect(await (await counting.statAndEmpty(empty)).empty).toBe(true);
  // A file: its stat, and the emptiness fails as isEmpty would (ENOTDIR), only once asked.
  const file = await counting.statAndEmpty(join(root, "a.txt"));
  expect(file.stat.isDirectory()).toBe(false);
  await expect(file.empty).rejects.toMatchObject({ code: "ENOTDIR" });
  await expect(counting.statAndEmpty(join(base.path, "gone"))).rejects.toMatchObject({ code: "ENOENT" });

  const journal = Journal.open(join(base.path, "state"), { lookRoot: counting });
  try {
    const first = await journal.roots.inspect("s", root);
    if (first.ok) journal.roots.record("s", root, first.identity);
    journal.append("s", [{ op: "mkdir", path: "d", mode: 0o755, mtimeNs: "0" }]);
    asked.length = 0;
    expect((await journal.roots.inspect("s", root, { deleting: true })).ok).toBe(true);
    expect(asked).toEqual(["statAndEmpty"]);
    rmSync(join(root, "a.txt"));
    asked.length = 0;
    expect(await journal.roots.inspect("s", root, { deleting: true })).toMatchObject({ ok: false, state: "root-empty" });
    expect(asked).toEqual(["statAndEmpty"]);
    // Not deleting: the stat alone.
    asked.length = 0;
    expect((await journal.roots.inspect("s", root)).ok).toBe(true);
    expect(asked).toEqual(["stat"]);
  } finally {
    journal.close();
  }
});
