// The host's signing key (contract/signing.ts): its own file in the state
// folder, beside the journal rather than inside it, so a lost or rebuilt
// journal keeps the host's ownership of its sets. Losing this file is losing
// ownership: the sets then move only by `tidemark adopt`. The key is bound to
// its place (owner-place.ts): a copy of the state folder makes its own key.

import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { generateSigningKey, signingKeyFromPem, signingKeyToPem, type SigningKey } from "../contract/signing.ts";
import { fsyncDir } from "./durable-file.ts";
import type { Logger } from "./log.ts";
import { currentPlace, describePlace, judgePlace, ownerPlacePath, readOwnerPlace, writeOwnerPlace, type CopiedKey, type Place, type PlaceVerdict } from "./owner-place.ts";

export const OWNER_KEY_FILE = "owner.key";

/** Held while the key or its place record is written: a second process waits, then finds what the first wrote. */
const KEY_LOCK_FILE = "owner.key.lock";
/** How long a process waits for another's write of the key (milliseconds; each takes a few). */
const KEY_LOCK_WAIT_MS = 10_000;
/** A lock this old was left by a process that died while writing: taken over. */
const KEY_LOCK_STALE_MS = 60_000;

export class OwnerKeyError extends Error {
  override name = "OwnerKeyError";
}

export function ownerKeyPath(stateDir: string): string {
  return join(stateDir, OWNER_KEY_FILE);
}

/** The host's key from the state folder, or undefined when it has none yet. */
export function readOwnerKey(stateDir: string): SigningKey | undefined {
  const file = ownerKeyPath(stateDir);
  let pem: string;
  try {
    pem = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new OwnerKeyError(`cannot read the host's signing key ${file}: ${(error as Error).message}`);
  }
  try {
    return signingKeyFromPem(pem);
  } catch (error) {
    throw new OwnerKeyError(`${file} holds no Ed25519 private key (${(error as Error).message}); restore it from a backup, or make a new one and move the sets with \`tidemark adopt\``);
  }
}

export interface OwnerKeyOptions {
  /** Where the key's place is told apart and a copy warned of; silent when absent. */
  readonly log?: Logger;
  /** Where the machine id is read, the first readable counting: tests name their own file to stand for another machine. @default MACHINE_ID_FILES */
  readonly machineIdFiles?: readonly string[];
  readonly now?: () => Date;
}

export interface LoadedOwnerKey {
  readonly key: SigningKey;
  /** The state folder had no key: this one was made. */
  readonly created: boolean;
  /** The state folder was found to be a copy now: its key was set aside and this one made. */
  readonly copied?: CopiedKey;
}

/**
 * The host's key, created (mode 0600, written durably) when the state folder has none, and made anew when the state
 * folder is found to be a copy of the place its key was made for (owner-place.ts): the copy's key is set aside.
 */
export function loadOrCreateOwnerKey(stateDir: string, options: OwnerKeyOptions = {}): LoadedOwnerKey {
  const existing = readOwnerKey(stateDir);
  if (existing) {
    const here = currentPlace(stateDir, options.machineIdFiles);
    const verdict = judgePlace(readOwnerPlace(stateDir), existing.keyId, here);
    // The common case writes nothing, and so also runs on a read-only state folder.
    if (verdict.kind === "same") return { key: existing, created: false };
    try {
      return withKeyLock(stateDir, () => settleKey(stateDir, options));
    } catch (error) {
      if (!(error instanceof StateReadOnlyError)) throw error;
      if (verdict.kind === "copy") {
        throw new OwnerKeyError(
          `the state folder ${here.path} is a copy of the one its signing key ${existing.keyId} was made for (${describePlace(verdict.from)}: ${verdict.why}), and its key cannot be set aside (${error.message}): a copy must not sign as the original host; make the state folder writable so that the next start gives this host its own key`,
        );
      }
      options.log?.warn("the place of this host's signing key could not be recorded (the state folder is read-only): a copy of this state folder is not told apart until it is", { file: ownerPlacePath(stateDir), error: error.message });
      return { key: existing, created: false };
    }
  }
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  try {
    return withKeyLock(stateDir, () => settleKey(stateDir, options));
  } catch (error) {
    if (error instanceof StateReadOnlyError) throw new OwnerKeyError(`cannot create this host's signing key in ${stateDir}: ${error.message}`);
    throw error;
  }
}

/** Under the key lock: the key as the state folder holds it now, created, recorded or made anew as its place says. */
function settleKey(stateDir: string, options: OwnerKeyOptions): LoadedOwnerKey {
  const now = (options.now ?? (() => new Date()))();
  const here = currentPlace(stateDir, options.machineIdFiles);
  const existing = readOwnerKey(stateDir);
  if (!existing) {
    const key = createKey(stateDir);
    if (key.created) writeOwnerPlace(stateDir, { v: 1, keyId: key.key.keyId, ...here, since: now.toISOString() });
    else recordPlace(stateDir, key.key, here, judgePlace(readOwnerPlace(stateDir), key.key.keyId, here), now, options.log);
    return key;
  }
  const verdict = judgePlace(readOwnerPlace(stateDir), existing.keyId, here);
  if (verdict.kind === "copy") return rekey(stateDir, existing, here, verdict, now, options.log);
  recordPlace(stateDir, existing, here, verdict, now, options.log);
  return { key: existing, created: false };
}

/** Writes the record of a key that stays, saying once why. */
function recordPlace(stateDir: string, key: SigningKey, here: Place, verdict: PlaceVerdict, now: Date, log: Logger | undefined): void {
  if (verdict.kind !== "record") return;
  writeOwnerPlace(stateDir, { v: 1, keyId: key.keyId, ...here, since: now.toISOString(), ...(verdict.copied ? { copied: verdict.copied } : {}) });
  const fields = { file: ownerPlacePath(stateDir), keyId: key.keyId, machineId: here.machineId, path: here.path, ...(verdict.detail !== undefined ? { detail: verdict.detail } : {}) };
  const messages: Record<typeof verdict.why, string> = {
    "no-record": "recorded where this host's signing key belongs (this machine and state folder): a copy of the state folder elsewhere will make its own key",
    unreadable: "the record of where this host's signing key belongs could not be read: recorded this machine and state folder anew",
    "other-key": "the record of where this host's signing key belongs names another key (the key was replaced): recorded this machine and state folder for it",
    "machine-id-found": "this machine has a machine id now: recorded it for this host's signing key",
    "same-folder": "the state folder is reached by another path now: recorded it for this host's signing key",
    moved: "the state folder moved (nothing holds this host's signing key at its old path): the key goes with it",
  };
  if (verdict.why === "no-record" && here.machineId === null) {
    log?.warn(`${messages["no-record"]}; this machine has no machine id (/etc/machine-id), so only a copy on this machine is told apart`, fields);
  } else {
    log?.info(messages[verdict.why], fields);
  }
}

/**
 * Sets the copied key aside and puts a new one in its place. The new key's record is written first: a process that
 * stops before the key is in place leaves the copied key with a record that names it as copied, and the next load
 * finishes the rekey.
 */
function rekey(stateDir: string, copiedKey: SigningKey, here: Place, verdict: Extract<PlaceVerdict, { kind: "copy" }>, now: Date, log: Logger | undefined): LoadedOwnerKey {
  const file = ownerKeyPath(stateDir);
  const key = generateSigningKey();
  const setAside = `${OWNER_KEY_FILE}.copied-${copiedKey.keyId}-${now.toISOString().replace(/[:.]/g, "-")}`;
  const copied: CopiedKey = { at: now.toISOString(), from: verdict.from, keyId: copiedKey.keyId, setAside };
  const temp = writeKeyTemp(file, key);
  try {
    writeOwnerPlace(stateDir, { v: 1, keyId: key.keyId, ...here, since: copied.at, copied });
    const asidePath = join(stateDir, setAside);
    linkSync(file, asidePath);
    chmodSync(asidePath, 0o600);
    renameSync(temp, file);
  } catch (error) {
    unlinkQuietly(temp);
    throw error;
  }
  fsyncDir(stateDir);
  log?.warn(
    `this state folder is a copy: its signing key was made for ${describePlace(verdict.from)}, and this folder is ${describePlace(here)} (${verdict.why}); two hosts signing with one key and one journal would interleave on the target unseen, so this host got a new key and the copied one is set aside as ${setAside}. The target's owner records of the sets still name the original host's key, so this host's sends are held (\`tidemark status\`: not-owner); if this host is meant to replace the original, run \`tidemark adopt SET\` here for each set`,
    { file, keyId: key.keyId, copiedKeyId: copiedKey.keyId, setAside, madeFor: verdict.from, now: here },
  );
  return { key, created: true, copied };
}

/** The key written (mode 0600, fsynced) to a temp file beside its place. */
function writeKeyTemp(file: string, key: SigningKey): string {
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, "w", 0o600);
  try {
    writeSync(fd, signingKeyToPem(key));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return temp;
}

/** A new key for a state folder that has none; another process's key if it created one first. */
function createKey(stateDir: string): { key: SigningKey; created: boolean } {
  const key = generateSigningKey();
  const file = ownerKeyPath(stateDir);
  const temp = writeKeyTemp(file, key);
  try {
    // A link, not a rename: two processes creating the key at once keep the first one's.
    linkSync(temp, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    const winner = readOwnerKey(stateDir);
    if (winner) return { key: winner, created: false };
    throw error;
  } finally {
    unlinkSync(temp);
  }
  fsyncDir(dirname(file));
  return { key, created: true };
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone.
  }
}

/** The state folder cannot be written: the key lock cannot be taken. */
class StateReadOnlyError extends Error {
  override name = "StateReadOnlyError";
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Runs `write` holding the key lock (a file created exclusively); a lock left by a process that died is taken over. */
function withKeyLock<T>(stateDir: string, write: () => T): T {
  const lock = join(stateDir, KEY_LOCK_FILE);
  const deadline = Date.now() + KEY_LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(lock, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EROFS" || code === "EACCES" || code === "EPERM") throw new StateReadOnlyError(`${lock}: ${(error as Error).message}`);
      if (code !== "EEXIST") throw error;
    }
    let age: number;
    try {
      age = Date.now() - statSync(lock).mtimeMs;
    } catch {
      continue;
    }
    if (age > KEY_LOCK_STALE_MS) {
      unlinkQuietly(lock);
      continue;
    }
    if (Date.now() > deadline) throw new OwnerKeyError(`${lock} is held by another process writing this host's signing key for over ${KEY_LOCK_WAIT_MS / 1000} s; it is taken over once a minute old`);
    Atomics.wait(pause, 0, 0, 20);
  }
  try {
    return write();
  } finally {
    unlinkQuietly(lock);
  }
}
