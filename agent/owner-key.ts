// The host's signing key (contract/signing.ts): its own file in the state
// folder, beside the journal rather than inside it, so a lost or rebuilt
// journal keeps the host's ownership of its sets. Losing this file is losing
// ownership: the sets then move only by `tidemark adopt`.

import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { generateSigningKey, signingKeyFromPem, signingKeyToPem, type SigningKey } from "../contract/signing.ts";

export const OWNER_KEY_FILE = "owner.key";

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

/** The host's key, created (mode 0600, written durably) when the state folder has none. */
export function loadOrCreateOwnerKey(stateDir: string): { key: SigningKey; created: boolean } {
  const existing = readOwnerKey(stateDir);
  if (existing) return { key: existing, created: false };
  const key = generateSigningKey();
  const file = ownerKeyPath(stateDir);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, "w", 0o600);
  try {
    writeSync(fd, signingKeyToPem(key));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
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
  const dir = openSync(dirname(file), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return { key, created: true };
}
