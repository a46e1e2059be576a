// Journal generations on the target (DESIGN 8): a set's seq chain belongs to
// one generation of the agent's journal. A new generation (journal lost or
// restored from an older copy, host rebuilt) restarts the chain at its resync
// record instead of having its records dropped as duplicates; a generation
// the set already left is refused. Never replay across a continuity break.

import type { SetStatus } from "../../contract/layout.ts";
import { BadMessageError, type WireRecord } from "../../contract/wire.ts";
import { rememberForgotten, wasForgotten } from "../../contract/forgotten-generations.ts";

/** Generations remembered per set: a host still sending one of them is refused, not taken for a new one. */
export const MAX_GENERATIONS_KEPT = 100;

/** A message of a generation the set already left: an older copy of the journal is sending. */
export class StaleGenerationError extends BadMessageError {
  override name = "StaleGenerationError";
}

export type GenerationVerdict =
  /** The set's own generation, or a message without one: the usual seq rules apply. */
  | { kind: "continue" }
  /** A new generation beginning with a resync: the chain restarts at it (the checkpoint is moved just before it); the records before it are superseded. */
  | { kind: "restart"; superseded: WireRecord[] }
  /** A new generation without a resync to restart the chain: nothing may be applied until the agent resyncs. */
  | { kind: "unannounced"; reason: string }
  /** A generation the set already left: refused, never applied. */
  | { kind: "stale"; error: StaleGenerationError };

function begin(status: SetStatus, id: string, seq: number, now: Date, reason: string): void {
  status.generation = id;
  delete status.heldGeneration;
  const all = [...(status.generations ?? []), { id, since: now.toISOString(), seq, reason }];
  rememberForgotten(status, all.slice(0, -MAX_GENERATIONS_KEPT));
  status.generations = all.slice(-MAX_GENERATIONS_KEPT);
}

/**
 * Decides how a message of generation `gen` enters the set's chain, and
 * records a generation change in `status` (written with the checkpoint).
 */
export function enterGeneration(status: SetStatus, gen: string | undefined, records: readonly WireRecord[], now: Date): GenerationVerdict {
  if (gen === undefined || gen === status.generation) return { kind: "continue" };
  const current = status.generation ?? "(none)";
  if (status.generations?.some((g) => g.id === gen)) {
    return {
      kind: "stale",
      error: new StaleGenerationError(
        `message of journal generation ${gen}, which set "${status.set}" left for generation ${current}: an older copy of the journal is sending; nothing of it was applied`,
      ),
    };
  }
  if (wasForgotten(status, gen)) {
    return {
      kind: "stale",
      error: new StaleGenerationError(
        `message of journal generation ${gen}, which set "${status.set}" left long ago (before its last ${MAX_GENERATIONS_KEPT} generations; the target keeps its digest): a replayed or very old copy of the journal is sending; nothing of it was applied`,
      ),
    };
  }
  const resyncAt = records.findIndex((r) => r.op === "resync");
  const resync = records[resyncAt];
  if (resync?.op === "resync") {
    begin(status, gen, resync.seq, now, `replaces generation ${current} (applied up to seq ${status.lastSeq}): ${resync.reason}`);
    status.lastSeq = resync.seq - 1;
    return { kind: "restart", superseded: records.slice(0, resyncAt) };
  }
  // A chain older than generations, continued by an agent that now names its generation.
  if (status.generation === undefined && records[0]?.seq === status.lastSeq + 1) {
    begin(status, gen, status.lastSeq + 1, now, status.lastSeq === 0 ? "first generation of the set" : `continues the chain at seq ${status.lastSeq + 1}`);
    return { kind: "continue" };
  }
  // Its agent may take the resync for on its way (continuity.ts): this tells it that it will not come.
  status.heldGeneration = { id: gen, seq: records[0]?.seq ?? 0 };
  return {
    kind: "unannounced",
    reason: `records of journal generation ${gen} (seq ${records[0]?.seq ?? "?"}) arrived while the set's chain is generation ${current} at seq ${status.lastSeq}, without a resync to restart it (journal lost or replaced on the source); set marked out of sync until the agent resyncs`,
  };
}
