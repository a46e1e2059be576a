// Continuity of a set's journal with the target's chain (DESIGN 8). A journal
// the target is ahead of (deleted, restored from an older copy, a rebuilt
// host) must not send its seqs into the old chain, where they would be
// dropped as duplicates: the agent begins a new generation, whose resync
// restarts the target's chain, and mirrors the set behind it.

import type { SetStatus } from "../contract/layout.ts";
import type { JournalGeneration } from "./journal.ts";

/**
 * Why this journal (its generation, and the last seq it gave) cannot continue
 * the target's chain, or undefined when it can.
 */
export function continuityBreak(generation: JournalGeneration, lastSeq: number, status: SetStatus | undefined): string | undefined {
  // A target that never applied anything has no chain to continue.
  if (!status || (status.lastSeq === 0 && status.generation === undefined)) return undefined;
  if (status.generation === generation.id) {
    if (lastSeq >= status.lastSeq) return undefined;
    return `the target applied seq ${status.lastSeq} of this journal's generation ${generation.id}, beyond the journal's last seq ${lastSeq}: the journal was restored from an older copy`;
  }
  if (status.generations?.some((g) => g.id === generation.id)) {
    return `the target left this journal's generation ${generation.id} for generation ${status.generation ?? "(none)"}: the journal is an older copy`;
  }
  if (awaitingGeneration(generation, status)) return undefined;
  // A chain that predates generations, continued by this journal: the applier takes it over at the next seq.
  if (status.generation === undefined && lastSeq >= status.lastSeq) return undefined;
  return `the target's chain is generation ${status.generation ?? "(none)"} at seq ${status.lastSeq}, this journal is generation ${generation.id} at seq ${lastSeq}: the journal was lost or replaced`;
}

/**
 * True while the resync that began this journal's generation is on its way to a target still in another one; not once
 * the target held the generation's later records without it (the resync was refused, e.g. before an adoption).
 */
export function awaitingGeneration(generation: JournalGeneration, status: SetStatus): boolean {
  return (
    generation.sinceSeq > 0 &&
    status.generation !== generation.id &&
    status.heldGeneration?.id !== generation.id &&
    !status.generations?.some((g) => g.id === generation.id)
  );
}
