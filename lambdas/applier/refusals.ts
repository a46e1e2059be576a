// A set's refusals (SetStatus.refused) kept per sending key, so `tidemark adopt`
// can answer the adopted key's refusals and leave every other key's named. The
// totals (`count`, `last`) stay what readers use; `byKey` is bounded so a flood
// of forged key ids cannot grow the status without limit.

import type { SetStatus } from "../../contract/layout.ts";

export type Refused = NonNullable<SetStatus["refused"]>;
export type RefusalRecord = Refused["last"];
interface KeyRefusals {
  readonly count: number;
  readonly last: RefusalRecord;
}

/** The byKey entry of messages that carried no signature (a key id is 16 hex digits, so it cannot collide). */
export const UNSIGNED_KEY = "unsigned";
/** The byKey entry that folds senders beyond the first MAX_NAMED_KEYS, and refusals recorded before byKey existed. */
export const OTHER_KEYS = "others";
export const MAX_NAMED_KEYS = 16;

function keyOf(last: RefusalRecord): string {
  return last.keyId ?? UNSIGNED_KEY;
}

/** A status written before byKey: one refusal is provably its last sender's; more cannot be told apart. */
function entriesOf(refused: Refused | undefined): Record<string, KeyRefusals> {
  if (!refused) return {};
  if (refused.byKey) return { ...refused.byKey };
  return { [refused.count === 1 ? keyOf(refused.last) : OTHER_KEYS]: { count: refused.count, last: refused.last } };
}

function totals(byKey: Record<string, KeyRefusals>): Refused | undefined {
  const entries = Object.values(byKey);
  const newest = entries.reduce<KeyRefusals | undefined>((latest, entry) => (!latest || entry.last.at >= latest.last.at ? entry : latest), undefined);
  if (!newest) return undefined;
  return { count: entries.reduce((sum, entry) => sum + entry.count, 0), last: newest.last, byKey };
}

/** refused with one more refusal, counted under its sender's key (or OTHER_KEYS once MAX_NAMED_KEYS are named). */
export function withRefusal(refused: Refused | undefined, last: RefusalRecord): Refused {
  const byKey = entriesOf(refused);
  const named = Object.keys(byKey).filter((key) => key !== OTHER_KEYS).length;
  const key = keyOf(last) in byKey || named < MAX_NAMED_KEYS ? keyOf(last) : OTHER_KEYS;
  byKey[key] = { count: (byKey[key]?.count ?? 0) + 1, last };
  return { count: (refused?.count ?? 0) + 1, last, byKey };
}

/** refused without keyId's refusals (an adoption answers them), or undefined when none of another sender remain. */
export function withoutKey(refused: Refused | undefined, keyId: string): Refused | undefined {
  return totals(Object.fromEntries(Object.entries(entriesOf(refused)).filter(([key]) => key !== keyId)));
}
