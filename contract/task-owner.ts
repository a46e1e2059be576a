// Which marker a task result belongs to. A task id is chosen by whoever sends
// the marker: a marker sent straight to the queue (no seq, unsigned) may take
// the id of an agent's marker, first or after it. A result names its marker
// (set, seq, journal generation), so the applier runs a marker whose id
// already holds another marker's result under an id of its own, and a waiter
// takes only its own marker's result.

import type { TaskResult } from "./tasks.ts";

/** What identifies a marker: its set, its seq in the set's stream (null: sent straight to the queue) and its journal generation. */
export interface MarkerIdentity {
  readonly set: string;
  readonly seq: number | null;
  readonly generation?: string | undefined;
}

/**
 * Whether `result` is the result of `marker`. A result without a generation (its set had none, or it was written
 * before results named theirs) is only a marker's without one: a set's seqs restart with each generation, so it
 * is not a later generation's marker at the same seq. A marker of unknown generation (an old agent's) matches on
 * set and seq alone.
 */
export function resultOfMarker(result: Pick<TaskResult, "set" | "seq" | "generation">, marker: MarkerIdentity): boolean {
  if (result.set !== marker.set || result.seq !== marker.seq) return false;
  return marker.generation === undefined || result.generation === marker.generation;
}

/**
 * The id a marker runs under when its own id already holds another marker's result: the id, with the marker's
 * generation and seq (a marker sent straight to the queue has neither: "queue"). Deterministic, so a redelivered
 * marker finds its result again and a waiter knows where to look; a task id cannot hold "~", so no sender's id
 * can take it first.
 */
export function collisionTaskId(id: string, marker: MarkerIdentity): string {
  return marker.seq === null ? `${id}~queue` : `${id}~${marker.generation ?? "nogen"}~${marker.seq}`;
}
