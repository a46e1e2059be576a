// Typed readers of the bucket's domain objects (contract/layout.ts): what the
// applier wrote for a set, read back by the agent for status, task waits,
// verify, prune and drills. Each answers a parsed object or undefined; none
// guesses at a body it cannot parse except where noted.

import { drillsPrefix, PREFIX, pruneReportKey, taskResultKey, VerifyReportSchema, verifyReportKey, type VerifyReport } from "../../contract/layout.ts";
import { DrillReportSchema, type DrillReport } from "../../contract/drills.ts";
import { PruneReportSchema, TaskResultSchema, type PruneReport, type TaskResult } from "../../contract/tasks.ts";
import { APPLIER_ANNOUNCEMENT_KEY, ApplierAnnouncementSchema, type ApplierAnnouncement } from "../../contract/applier-accepts.ts";
import type { TargetStore } from "../store/store.ts";

export { readSetStatus } from "../store/set-status.ts";

/** The task's result, or undefined when the applier has written none yet (or an unreadable one). */
export async function readTaskResult(store: TargetStore, set: string, id: string): Promise<TaskResult | undefined> {
  const body = (await store.get(taskResultKey(set, id)))?.body;
  if (!body) return undefined;
  const parsed = TaskResultSchema.safeParse(JSON.parse(body.toString("utf8")));
  return parsed.success ? parsed.data : undefined;
}

/** The set's task results, oldest first (by when the applier reached them). */
export async function listTasks(store: TargetStore, set: string): Promise<TaskResult[]> {
  const results: TaskResult[] = [];
  const prefix = `${PREFIX.tasks}${set}/`;
  for await (const object of store.list(prefix)) {
    if (!object.key.endsWith(".json")) continue;
    const result = await readTaskResult(store, set, object.key.slice(prefix.length, -".json".length));
    if (result) results.push(result);
  }
  return results.sort((a, b) => (a.reachedAt < b.reachedAt ? -1 : a.reachedAt > b.reachedAt ? 1 : 0));
}

/** A verification's report; throws when one is there but is not a report. */
export async function readVerifyReport(store: TargetStore, set: string, id: string): Promise<VerifyReport | undefined> {
  const object = await store.get(verifyReportKey(set, id));
  return object && VerifyReportSchema.parse(JSON.parse(object.body.toString("utf8")));
}

/** A prune's report; throws when one is there but is not a report. */
export async function readPruneReport(store: TargetStore, set: string, id: string): Promise<PruneReport | undefined> {
  const object = await store.get(pruneReportKey(set, id));
  return object && PruneReportSchema.parse(JSON.parse(object.body.toString("utf8")));
}

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

/** What the stack's applier announced it accepts (contract/applier-accepts.ts), or undefined when none did (an older stack) or it does not parse. */
export async function readApplierAnnouncement(store: TargetStore): Promise<ApplierAnnouncement | undefined> {
  const body = (await store.get(APPLIER_ANNOUNCEMENT_KEY))?.body;
  if (!body) return undefined;
  const parsed = ApplierAnnouncementSchema.safeParse(JSON.parse(body.toString("utf8")));
  return parsed.success ? parsed.data : undefined;
}
