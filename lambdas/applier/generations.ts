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
  /** The set's own generation, or a message without one: the usual seq rules apply. `apply` records a chain older than generations taking this one. */
  | { kind: "continue"; apply: () => void }
  /**
   * A new generation beginning with a resync: the chain restarts at it; the records before it are superseded.
   * `lastSeq`: the checkpoint just before the resync. `apply` records the change, moving the checkpoint there.
   */
  | { kind: "restart"; superseded: WireRecord[]; lastSeq: number; apply: () => void }
  /** A new generation without a resync to restart the chain: nothing may be applied until the agent resyncs. `apply` names it held. */
  | { kind: "unannounced"; reason: string; apply: () => void }
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
 * Decides how a message of generation `gen` enters the set's chain without
 * changing `status`: the verdict's `apply` records a generation change, called
 * only once the message's records passed their checks (a rejected message
 * changes nothing), and written with the checkpoint.
 */
export function enterGeneration(status: SetStatus, gen: string | undefined, records: readonly WireRecord[], now: Date): GenerationVerdict {
  if (gen === undefined || gen === status.generation) return { kind: "continue", apply: () => {} };
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
    const reason = `replaces generation ${current} (applied up to seq ${status.lastSeq}): ${resync.reason}`;
    const lastSeq = resync.seq - 1;
    const apply = () => {
      begin(status, gen, resync.seq, now, reason);
      status.lastSeq = lastSeq;
    };
    return { kind: "restart", superseded: records.slice(0, resyncAt), lastSeq, apply };
  }
  // A chain older than generations, continued by an agent that now names its generation.
  if (status.generation === undefined && records[0]?.seq === status.lastSeq + 1) {
    const seq = status.lastSeq + 1;
    const reason = status.lastSeq === 0 ? "first generation of the set" : `continues the chain at seq ${seq}`;
    return { kind: "continue", apply: () => begin(status, gen, seq, now, reason) };
  }
  // Its agent may take the resync for on its way (continuity.ts): this tells it that it will not come.
  const held = { id: gen, seq: records[0]?.seq ?? 0 };
  return {
    kind: "unannounced",
    apply: () => {
      status.heldGeneration = held;
    },
    reason: `records of journal generation ${gen} (seq ${records[0]?.seq ?? "?"}) arrived while the set's chain is generation ${current} at seq ${status.lastSeq}, without a resync to restart it (journal lost or replaced on the source); set marked out of sync until the agent resyncs`,
  };
}
