// A set's start scan in progress, kept where `tidemark status` reads it: until
// that scan has journaled all the source holds (a first mirror of a large
// tree takes minutes), the target having applied all the journal holds is
// not "in sync". One small file per set under the state folder; an agent
// killed mid-scan leaves it, and its next start scans (and clears it) again.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const fileOf = (stateDir: string, set: string) => join(stateDir, "scanning", `${set}.json`);

/** Marks the set's scan as running from now on; best effort, as a full disk must not stop the scan (it waits for space). */
export function beginScan(stateDir: string, set: string, now: Date = new Date()): void {
  try {
    mkdirSync(join(stateDir, "scanning"), { recursive: true });
    writeFileSync(fileOf(stateDir, set), JSON.stringify({ since: now.toISOString() }));
  } catch {
    // Status then goes by the journal alone, as before this file existed.
  }
}

/** The scan finished (or failed): the journal holds what it found. */
export function endScan(stateDir: string, set: string): void {
  rmSync(fileOf(stateDir, set), { force: true });
}

/** When the set's running scan began; undefined when none runs. */
export function scanningSince(stateDir: string, set: string): string | undefined {
  try {
    const { since } = JSON.parse(readFileSync(fileOf(stateDir, set), "utf8")) as { since?: unknown };
    return typeof since === "string" ? since : undefined;
  } catch {
    return undefined;
  }
}
