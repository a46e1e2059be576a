// What task markers' actions do in the local cloud: snapshots as on AWS,
// `event` (and the "task finished" events) appended to a JSON-lines file,
// and a clear "not available locally" for `invoke` and `backup`.

import type { TaskSettings } from "../applier/markers.ts";
import { EventAction, unavailable } from "../tasks/actions.ts";
import { FileEventSink } from "../tasks/aws-actions.ts";

/** The local cloud's event log, in its state dir (next to the config). */
export const LOCAL_EVENTS_FILE = "events.jsonl";

export function localTaskSettings(eventsFile: string): TaskSettings {
  const events = new FileEventSink(eventsFile);
  return {
    enabled: true,
    events,
    actions: {
      event: new EventAction(events),
      invoke: unavailable("invoke is not available locally: the local cloud runs no Lambda functions (deploy the stack to invoke one)"),
      backup: unavailable("backup is not available locally: AWS Backup needs the deployed stack"),
    },
  };
}
