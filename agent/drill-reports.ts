// Reading drill reports back from the target (drills/<set>/<id>.json):
// `tidemark status` shows the last one, the drill schedule starts from it.

import { drillsPrefix } from "../contract/layout.ts";
import { DrillReportSchema, type DrillReport } from "../contract/drills.ts";
import type { TargetStore } from "../lambdas/store/store.ts";

/** The set's newest drill report (ids sort by time), or undefined when none was written or it does not parse. */
export async function latestDrillReport(store: TargetStore, set: string): Promise<DrillReport | undefined> {
  let last: string | undefined;
  for await (const object of store.list(drillsPrefix(set))) if (object.key.endsWith(".json") && (last === undefined || object.key > last)) last = object.key;
  if (last === undefined) return undefined;
  const body = (await store.get(last))?.body;
  if (!body) return undefined;
  const parsed = DrillReportSchema.safeParse(JSON.parse(body.toString("utf8")));
  return parsed.success ? parsed.data : undefined;
}
