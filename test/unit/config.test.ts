// Strict configuration: unknown keys name the key meant, and sets may not share,
// nest or hold the agent's own state folder: by path as written when any
// command loads the config (no file system call on a root: one on a hung
// network file system would hang status), by real path, symlinks included,
// when the agent starts (root-places.ts).

import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigSchema, loadConfig } from "../../agent/config.ts";
import { checkRoots } from "../../agent/root-places.ts";
import { lookHere } from "../../agent/set-roots.ts";
import { closest } from "../../agent/suggest.ts";
import { tempDir } from "../support/tree.ts";

describe("strict configuration", () => {
  let dir: ReturnType<typeof tempDir>;
  let file: string;
  beforeEach(() => {
    dir = tempDir("tidemark-config-");
    file = join(dir.path, "tidemark.config.json");
    mkdirSync(join(dir.path, "www"));
    mkdirSync(join(dir.path, "db"));
  });
  afterEach(() => dir.remove());

  /** The agent's start's checks of the roots, after the config loaded. */
  const atStart = (file: string) => checkRoots(loadConfig(file), () => false, lookHere);

  const write = (extra: Record<string, unknown>, sets: unknown[] = [{ name: "www", path: "www" }]) =>
    writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "state", sets, ...extra }));

  it("accepts a config without mistakes", () => {
    write({ tasks: { enabled: true }, mirror: { onStart: "scan" }, bandwidth: { bytesPerSecond: 1000, schedule: [{ from: "08:00", to: "18:00", bytesPerSecond: 0 }] } }, [
      { name: "www", path: "www", exclude: ["*.tmp"] },
      { name: "db", path: "db" },
    ]);
    expect(loadConfig(file).sets.map((s) => s.name)).toEqual(["www", "db"]);
  });

  it.each([
    ["a top-level key", { journalLimitByte: 1 << 30 }, undefined, /\(top level\): unknown key "journalLimitByte" \(did you mean "journalLimitBytes"\?\)/],
    ["a tree set's key", {}, [{ name: "www", path: "www", exclued: ["*.log"] }], /sets\.0: unknown key "exclued" \(did you mean "exclude"\?\)/],
    ["a volume set's key", {}, [{ name: "vm", type: "volume", path: "disk.img", scanSecond: 30 }], /sets\.0: unknown key "scanSecond" \(did you mean "scanSeconds"\?\)/],
    ["a key of tasks", { tasks: { enable: false } }, undefined, /tasks: unknown key "enable" \(did you mean "enabled"\?\)/],
    ["a key of mirror", { mirror: { onstart: "full" } }, undefined, /mirror: unknown key "onstart" \(did you mean "onStart"\?\)/],
    ["a key of bandwidth", { bandwidth: { bytesPerSec: 10 } }, undefined, /bandwidth: unknown key "bytesPerSec" \(did you mean "bytesPerSecond"\?\)/],
    ["a key of a schedule entry", { bandwidth: { schedule: [{ day: ["mon"], from: "08:00", to: "18:00", bytesPerSecond: 0 }] } }, undefined, /bandwidth\.schedule\.0: unknown key "day" \(did you mean "days"\?\)/],
    ["a key like nothing known", { frobnicate: true }, undefined, /\(top level\): unknown key "frobnicate"; known keys here: "region", /],
  ])("refuses %s, naming the key meant", (_what, extra, sets, message) => {
    write(extra, sets);
    expect(() => loadConfig(file)).toThrow(message);
  });

  it("lingers 2 s by default before sending a trickle, takes 0 for at once, and refuses what is not whole milliseconds up to a minute", () => {
    write({});
    expect(loadConfig(file).lingerMs).toBe(2000);
    write({ lingerMs: 0 });
    expect(loadConfig(file).lingerMs).toBe(0);
    write({ lingerMs: -1 });
    expect(() => loadConfig(file)).toThrow(/lingerMs: 0 or more milliseconds \(0 sends every change at once\)/);
    write({ lingerMs: 1.5 });
    expect(() => loadConfig(file)).toThrow(/lingerMs: whole milliseconds, such as 2000/);
    write({ lingerMs: 120_000 });
    expect(() => loadConfig(file)).toThrow(/lingerMs: at most 60000 ms/);
    write({ lingerMs: "2s" });
    expect(() => loadConfig(file)).toThrow(/lingerMs: a number of milliseconds, such as 2000/);
  });

  it("captures a busy small file at most every 500 ms by default, takes 0 for every change, and refuses what is not whole milliseconds up to a minute", () => {
    write({});
    expect(loadConfig(file).captureIntervalMs).toBe(500);
    write({ captureIntervalMs: 0 });
    expect(loadConfig(file).captureIntervalMs).toBe(0);
    write({ captureIntervalMs: -1 });
    expect(() => loadConfig(file)).toThrow(/captureIntervalMs: 0 or more milliseconds \(0 captures every change at once\)/);
    write({ captureIntervalMs: 2.5 });
    expect(() => loadConfig(file)).toThrow(/captureIntervalMs: whole milliseconds, such as 500/);
    write({ captureIntervalMs: 61_000 });
    expect(() => loadConfig(file)).toThrow(/captureIntervalMs: at most 60000 ms/);
    write({ captureIntervalMs: "1s" });
    expect(() => loadConfig(file)).toThrow(/captureIntervalMs: a number of milliseconds, such as 500/);
  });

  it("makes every object of the config strict, keys added later included", () => {
    // Whoever adds a section with z.object instead of strictObject makes this fail.
    const schema = z.toJSONSchema(ConfigSchema, { io: "input", unrepresentable: "any" });
    const loose: string[] = [];
    const visit = (node: unknown, path: string) => {
      if (Array.isArray(node)) return node.forEach((child, i) => visit(child, `${path}[${i}]`));
      if (typeof node !== "object" || node === null) return;
      if ("properties" in node && !("additionalProperties" in node && node.additionalProperties === false)) loose.push(path || "(top level)");
      for (const [key, child] of Object.entries(node)) visit(child, `${path}.${key}`);
    };
    visit(schema, "");
    expect(loose).toEqual([]);
  });

  it("refuses two sets on one folder, also through a symlink (at the start)", async () => {
    write({}, [
      { name: "a", path: "www" },
      { name: "b", path: "www/" },
    ]);
    expect(() => loadConfig(file)).toThrow(/sets "a" and "b" are the same folder/);
    symlinkSync(join(dir.path, "www"), join(dir.path, "link"));
    write({}, [
      { name: "a", path: "www" },
      { name: "b", path: "link" },
    ]);
    expect(loadConfig(file).sets).toHaveLength(2);
    await expect(atStart(file)).rejects.toThrow(/sets "a" and "b" are the same folder \(.*link -> .*www\)/);
  });

  it("refuses a set inside another, either way round and through a symlink (at the start)", async () => {
    mkdirSync(join(dir.path, "www", "static"));
    write({}, [
      { name: "site", path: "www" },
      { name: "static", path: "www/static" },
    ]);
    expect(() => loadConfig(file)).toThrow(/set "static" \(.*www\/static\) is inside set "site"/);
    write({}, [
      { name: "static", path: "www/static" },
      { name: "site", path: "www" },
    ]);
    expect(() => loadConfig(file)).toThrow(/set "static" .* is inside set "site"/);
    symlinkSync(join(dir.path, "www", "static"), join(dir.path, "elsewhere"));
    write({}, [
      { name: "site", path: "www" },
      { name: "static", path: "elsewhere" },
    ]);
    expect(loadConfig(file).sets).toHaveLength(2);
    await expect(atStart(file)).rejects.toThrow(/set "static" \(.*elsewhere -> .*www\/static\) is inside set "site"/);
  });

  it("refuses a disk image inside a tree set, and keeps sets side by side (www and www2) apart", () => {
    writeFileSync(join(dir.path, "www", "disk.img"), Buffer.alloc(1024));
    write({}, [
      { name: "site", path: "www" },
      { name: "vm", type: "volume", path: "www/disk.img" },
    ]);
    expect(() => loadConfig(file)).toThrow(/set "vm" .* is inside set "site"/);
    mkdirSync(join(dir.path, "www2"));
    write({}, [
      { name: "site", path: "www" },
      { name: "site2", path: "www2" },
    ]);
    expect(loadConfig(file).sets).toHaveLength(2);
  });

  it("refuses a state folder inside a set, also one that does not exist yet and one reached through a symlink (at the start)", async () => {
    write({ stateDir: "www/.tidemark" });
    expect(() => loadConfig(file)).toThrow(/stateDir .*www\/\.tidemark is inside set "www" .*replicate its own journal/);
    symlinkSync(join(dir.path, "www"), join(dir.path, "state-link"));
    write({ stateDir: "state-link/agent" });
    expect(loadConfig(file).stateDir).toBe(join(dir.path, "state-link", "agent"));
    await expect(atStart(file)).rejects.toThrow(/stateDir .*state-link\/agent is inside set "www"/);
    write({ stateDir: "www-state" });
    expect(loadConfig(file).stateDir).toBe(join(dir.path, "www-state"));
    await expect(atStart(file)).resolves.toEqual([]);
  });
});

describe("did you mean", () => {
  it("finds a near word, case aside, and nothing for a far one", () => {
    expect(closest("exclued", ["exclude", "name", "path"])).toBe("exclude");
    expect(closest("STATUS", ["status", "task"])).toBe("status");
    expect(closest("stauts", ["status", "tasks"])).toBe("status");
    expect(closest("xyz", ["status", "task"])).toBeUndefined();
  });
});
