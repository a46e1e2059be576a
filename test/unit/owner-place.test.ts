// The host's key is bound to the place of its state folder (owner-place.ts):
// a copy of the state folder (on this machine while the original is there, or
// on another machine) makes its own key and sets the copied one aside; a move,
// a restore in place, an upgrade and a restart keep the key.

import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../agent/log.ts";
import { loadOrCreateOwnerKey, OwnerKeyError, ownerKeyPath, readOwnerKey } from "../../agent/owner-key.ts";
import { OwnerPlaceSchema, ownerPlacePath, readMachineId, type OwnerPlace } from "../../agent/owner-place.ts";
import { canMountTmpfs, mountTmpfs, unmountTmpfs } from "../support/tmpfs.ts";
import { tempDir } from "../support/tree.ts";

const MACHINE_A = "a".repeat(32);
const MACHINE_B = "b".repeat(32);

let work: ReturnType<typeof tempDir>;
/** The machine-id file of each stand-in machine. */
let machineA: string;
let machineB: string;
let lines: { level: string; msg: string; [field: string]: unknown }[];
const log = createLogger({ json: true, write: (line) => lines.push(JSON.parse(line) as (typeof lines)[number]) });

beforeEach(() => {
  work = tempDir("tidemark-owner-place-");
  machineA = join(work.path, "machine-a");
  machineB = join(work.path, "machine-b");
  writeFileSync(machineA, `${MACHINE_A}\n`);
  writeFileSync(machineB, `${MACHINE_B}\n`);
  lines = [];
});
afterEach(() => work.remove());

/** Loads the key as a start on the machine whose machine-id file this is. */
const load = (stateDir: string, machine: string) => loadOrCreateOwnerKey(stateDir, { log, machineIdFiles: [machine] });
const record = (stateDir: string): OwnerPlace => OwnerPlaceSchema.parse(JSON.parse(readFileSync(ownerPlacePath(stateDir), "utf8")));
/** The record as written, nothing stripped. */
const written = (stateDir: string): unknown => JSON.parse(readFileSync(ownerPlacePath(stateDir), "utf8"));
const setAside = (stateDir: string) => readdirSync(stateDir).filter((name) => name.startsWith("owner.key.copied-"));
const mode = (file: string) => statSync(file).mode & 0o777;

describe("the place of the host's key", () => {
  it("is recorded when the key is made: the machine id, the state folder's real path, the key id (mode 0600)", () => {
    const state = join(work.path, "state");
    const made = load(state, machineA);
    expect(made.created).toBe(true);
    expect(record(state)).toMatchObject({ v: 1, keyId: made.key.keyId, machineId: MACHINE_A, path: state });
    expect(record(state).copied).toBeUndefined();
    expect(mode(ownerPlacePath(state))).toBe(0o600);
    expect(lines.filter((line) => line.level === "warn")).toEqual([]);
  });

  it("is recorded for a key made before places were (an upgrade): the key stays, logged once", () => {
    const state = join(work.path, "state");
    const before = load(state, machineA).key;
    // The state folder of an earlier version: a key, no record.
    renameSync(ownerPlacePath(state), join(work.path, "dropped"));
    lines = [];
    const upgraded = load(state, machineA);
    expect(upgraded).toMatchObject({ created: false, key: { keyId: before.keyId } });
    expect(record(state)).toMatchObject({ keyId: before.keyId, machineId: MACHINE_A, path: state });
    expect(lines.map((line) => line.msg)).toEqual([expect.stringMatching(/^recorded where this host's signing key belongs/)]);
    lines = [];
    expect(load(state, machineA).key.keyId).toBe(before.keyId);
    expect(lines).toEqual([]);
  });

  it("keeps the key of a state folder restored in place from a backup", () => {
    const state = join(work.path, "state");
    const backup = join(work.path, "backup");
    const key = load(state, machineA).key;
    cpSync(state, backup, { recursive: true });
    renameSync(state, join(work.path, "lost"));
    cpSync(backup, state, { recursive: true });
    expect(load(state, machineA)).toMatchObject({ created: false, key: { keyId: key.keyId } });
    expect(setAside(state)).toEqual([]);
    expect(record(state)).toMatchObject({ keyId: key.keyId, machineId: MACHINE_A, path: state });
  });

  it("makes a new key for a copy on the same machine while the original is there, setting the copied key aside", () => {
    const original = join(work.path, "original");
    const copy = join(work.path, "copy");
    const key = load(original, machineA).key;
    cpSync(original, copy, { recursive: true });
    lines = [];
    const copied = load(copy, machineA);
    expect(copied.key.keyId).not.toBe(key.keyId);
    expect(copied).toMatchObject({ created: true, copied: { keyId: key.keyId, from: { machineId: MACHINE_A, path: original } } });
    expect(readOwnerKey(copy)?.keyId).toBe(copied.key.keyId);
    const aside = setAside(copy);
    expect(aside).toEqual([expect.stringMatching(new RegExp(`^owner\\.key\\.copied-${key.keyId}-`))]);
    expect(readFileSync(join(copy, aside[0] ?? ""), "utf8")).toBe(readFileSync(ownerKeyPath(original), "utf8"));
    expect(mode(join(copy, aside[0] ?? ""))).toBe(0o600);
    expect(mode(ownerKeyPath(copy))).toBe(0o600);
    expect(record(copy)).toMatchObject({ keyId: copied.key.keyId, machineId: MACHINE_A, path: copy, copied: { keyId: key.keyId, setAside: aside[0] } });
    expect(written(copy)).toEqual({ ...record(copy), copied: { ...record(copy).copied, from: { machineId: MACHINE_A, path: original } } });
    const warning = lines.find((line) => line.level === "warn");
    expect(warning?.msg).toContain(`its signing key was made for ${original} on machine ${MACHINE_A}, and this folder is ${copy} on machine ${MACHINE_A}`);
    expect(warning?.msg).toContain("this host's sends are held (`tidemark status`: not-owner)");
    expect(warning?.msg).toContain("`tidemark adopt SET`");
    // The original is still the host it was.
    expect(load(original, machineA)).toMatchObject({ created: false, key: { keyId: key.keyId } });
    expect(setAside(original)).toEqual([]);
  });

  it("keeps the key of a state folder moved on the same machine (nothing holds it at the old path), and records the new path", () => {
    const original = join(work.path, "original");
    const moved = join(work.path, "moved");
    const key = load(original, machineA).key;
    renameSync(original, moved);
    lines = [];
    expect(load(moved, machineA)).toMatchObject({ created: false, key: { keyId: key.keyId } });
    expect(setAside(moved)).toEqual([]);
    expect(record(moved)).toMatchObject({ keyId: key.keyId, path: moved });
    expect(lines.map((line) => line.msg)).toEqual([expect.stringMatching(/state folder moved/)]);
    // A new state folder at the old path (another key) does not make the moved one a copy.
    load(original, machineA);
    expect(load(moved, machineA).key.keyId).toBe(key.keyId);
  });

  it("makes a new key for a state folder on another machine (same path), and keeps it at the next starts", () => {
    const state = join(work.path, "state");
    const key = load(state, machineA).key;
    const copied = load(state, machineB);
    expect(copied.key.keyId).not.toBe(key.keyId);
    expect(copied.copied).toMatchObject({ keyId: key.keyId, from: { machineId: MACHINE_A, path: state } });
    expect(record(state)).toMatchObject({ keyId: copied.key.keyId, machineId: MACHINE_B, copied: { keyId: key.keyId } });
    expect(written(state)).toEqual({ ...record(state), copied: { ...record(state).copied, from: { machineId: MACHINE_A, path: state } } });
    // No rekey loop: the new key is this place's.
    lines = [];
    for (let i = 0; i < 2; i++) expect(load(state, machineB)).toMatchObject({ created: false, key: { keyId: copied.key.keyId } });
    expect(setAside(state)).toHaveLength(1);
    expect(lines).toEqual([]);
    // The record of the copy stays, for status and doctor to name, when the folder moves on.
    const moved = join(work.path, "moved");
    renameSync(state, moved);
    expect(load(moved, machineB).key.keyId).toBe(copied.key.keyId);
    expect(record(moved).copied).toMatchObject({ keyId: key.keyId });
  });

  it("keeps the new key of a copy on the same machine at the next starts, the original still there", () => {
    const original = join(work.path, "original");
    const copy = join(work.path, "copy");
    load(original, machineA);
    cpSync(original, copy, { recursive: true });
    const copied = load(copy, machineA).key;
    expect(load(copy, machineA)).toMatchObject({ created: false, key: { keyId: copied.keyId } });
    expect(setAside(copy)).toHaveLength(1);
  });

  it("finishes a rekey that stopped after the new key's record was written", () => {
    const original = join(work.path, "original");
    const copy = join(work.path, "copy");
    const key = load(original, machineA).key;
    cpSync(original, copy, { recursive: true });
    load(copy, machineA);
    // As if the process had stopped before putting the new key in place: the copied key is back, with the new record.
    writeFileSync(ownerKeyPath(copy), readFileSync(ownerKeyPath(original)), { mode: 0o600 });
    const finished = load(copy, machineA);
    expect(finished.key.keyId).not.toBe(key.keyId);
    expect(finished.copied).toMatchObject({ keyId: key.keyId, from: { path: original } });
    expect(load(copy, machineA).key.keyId).toBe(finished.key.keyId);
  });

  it("uses no machine id when none is readable (an emptied /etc/machine-id): only paths are compared", () => {
    const emptied = join(work.path, "emptied");
    writeFileSync(emptied, "");
    expect(readMachineId([emptied, join(work.path, "missing")])).toBeNull();
    expect(readMachineId([emptied, machineB])).toBe(MACHINE_B);
    const state = join(work.path, "state");
    const key = load(state, emptied).key;
    expect(record(state).machineId).toBeNull();
    // Unknown then known: the same path is the same host, and the id is recorded from then on.
    expect(load(state, machineA).key.keyId).toBe(key.keyId);
    expect(record(state).machineId).toBe(MACHINE_A);
    expect(load(state, machineB).key.keyId).not.toBe(key.keyId);
  });

  it("gives processes loading a state folder at once one key: a copied one's set aside once, a new one's created once", async () => {
    const original = join(work.path, "original");
    const copy = join(work.path, "copy");
    const fresh = join(work.path, "fresh");
    const key = load(original, machineA).key;
    cpSync(original, copy, { recursive: true });
    const run = (stateDir: string) =>
      new Promise<string>((resolve, reject) => {
        const script = `import { loadOrCreateOwnerKey } from ${JSON.stringify(new URL("../../agent/owner-key.ts", import.meta.url).href)};
          process.stdout.write(loadOrCreateOwnerKey(${JSON.stringify(stateDir)}, { machineIdFiles: [${JSON.stringify(machineA)}] }).key.keyId);`;
        const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
        let out = "";
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
        child.once("error", reject);
        child.once("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))));
      });
    const [copies, fresher] = await Promise.all([Promise.all([run(copy), run(copy), run(copy)]), Promise.all([run(fresh), run(fresh), run(fresh)])]);
    expect(new Set(copies).size).toBe(1);
    expect(copies[0]).not.toBe(key.keyId);
    expect(readOwnerKey(copy)?.keyId).toBe(copies[0]);
    expect(setAside(copy)).toHaveLength(1);
    expect(new Set(fresher).size).toBe(1);
    expect(readOwnerKey(fresh)?.keyId).toBe(fresher[0]);
    expect(record(fresh)).toMatchObject({ keyId: fresher[0], path: fresh });
    for (const dir of [copy, fresh]) expect(readdirSync(dir).filter((name) => name.endsWith(".lock") || name.endsWith(".tmp"))).toEqual([]);
  });

  it.skipIf(!canMountTmpfs)("refuses the copied key of a read-only copy, and loads a read-only state folder at its own place", () => {
    const original = join(work.path, "original");
    const mount = join(work.path, "ro");
    const key = load(original, machineA).key;
    mkdirSync(mount);
    mountTmpfs(mount, 1);
    try {
      const copy = join(mount, "state");
      cpSync(original, copy, { recursive: true });
      const place = (stateDir: string, path: string) => writeFileSync(ownerPlacePath(stateDir), JSON.stringify({ ...record(stateDir), path }));
      // A read-only folder at the place its key was made for is loaded as it is.
      const inPlace = join(mount, "in-place");
      cpSync(original, inPlace, { recursive: true });
      place(inPlace, inPlace);
      // One of an earlier version (no record): loaded, with a warning that its place could not be recorded.
      const upgraded = join(mount, "upgraded");
      cpSync(original, upgraded, { recursive: true });
      rmSync(ownerPlacePath(upgraded));
      execFileSync("mount", ["-o", "remount,ro", mount]);
      expect(() => load(copy, machineA)).toThrow(OwnerKeyError);
      expect(() => load(copy, machineA)).toThrow(/is a copy of the one its signing key .* was made for .* cannot be set aside/);
      expect(load(inPlace, machineA).key.keyId).toBe(key.keyId);
      lines = [];
      expect(load(upgraded, machineA).key.keyId).toBe(key.keyId);
      expect(lines).toEqual([expect.objectContaining({ level: "warn", msg: expect.stringMatching(/could not be recorded \(the state folder is read-only\)/) })]);
      expect(readOwnerKey(copy)?.keyId).toBe(key.keyId);
    } finally {
      unmountTmpfs(mount);
    }
  });
});
