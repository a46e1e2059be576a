// Reading a set's status object: the applier's checkpoint, and what
// `tidemark status` shows of the target, with the history segments written
// after it folded in (status-checkpoint.ts).

import { SetStatusSchema, initialStatus, statusKey, type SetStatus } from "../../contract/layout.ts";
import type { TargetStore } from "./store.ts";
import { foldSegments } from "./status-checkpoint.ts";

/** The set's status as of its newest segment, or the initial one (nothing applied yet) when the target has none. */
export async function readSetStatus(store: TargetStore, set: string): Promise<SetStatus> {
  const stored = await readStoredStatus(store, set);
  return stored ? foldSegments(store, stored.status) : initialStatus(set);
}

/** The status object as stored (without the segments after it) and its text, or undefined when the target has none. */
export async function readStoredStatus(store: TargetStore, set: string): Promise<{ status: SetStatus; text: string } | undefined> {
  const object = await store.get(statusKey(set));
  if (!object) return undefined;
  const text = object.body.toString("utf8");
  const parsed = SetStatusSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${statusKey(set)} is not a status object: ${parsed.error.issues[0]?.message ?? "invalid"}`);
  return { status: parsed.data, text };
}
