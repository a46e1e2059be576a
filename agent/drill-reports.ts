// Reading drill reports back from the target (drills/<set>/<id>.json):
// `tidemark status` shows the last one, the drill schedule starts from it.

import { drillsPrefix } from "../contract/layout.ts";
import { DrillReportSchema, type DrillReport } from "../contract/drills.ts";
import type { TargetStore } from "../lambdas/store/store.ts";

/**
 * The set's newest drill report, or undefined when none was written or none parses. Ids begin with the
 * second they were made in: the reports of the newest second are read and the one that finished last wins.
 */
export async function latestDrillReport(store: TargetStore, set: string): Promise<DrillReport | undefined> {
  const prefix = drillsPrefix(set);
  const second = (key: string) => key.slice(prefix.length).split("-")[0] ?? "";
  let newest: string[] = [];
  for await (const object of store.list(prefix)) {
    if (!object.key.endsWith(".json")) continue;
    const at = second(object.key);
    const current = newest[0] === undefined ? undefined : second(newest[0]);
    if (current === undefined || at > current) newest = [object.key];
    else if (at === current) newest.push(object.key);
  }
  let latest: DrillReport | undefined;
  for (const key of newest) {
    const body = (await store.get(key))?.body;
    if (!body) continue;
    const parsed = DrillReportSchema.safeParse(JSON.parse(body.toString("utf8")));
    if (parsed.success && (latest === undefined || parsed.data.finishedAt > latest.finishedAt)) latest = parsed.data;
  }
  return latest;
}
