// What task markers' actions do in the local cloud: snapshots as on AWS,
// `event` (and the "task finished" events) appended to a JSON-lines file,
// `ebs-snapshot` against the local stand-in of the EBS direct APIs, and a
// clear "not available locally" for `invoke` and `backup`.

import { EBSClient } from "@aws-sdk/client-ebs";
import type { TaskSettings } from "../applier/markers.ts";
import { IN_PROCESS, makeClient } from "../aws-clients.ts";
import type { TargetStore } from "../store/store.ts";
import { EbsSnapshotAction } from "../volumes/ebs-snapshot.ts";
import { EventAction, unavailable } from "../tasks/actions.ts";
import { FileEventSink } from "../tasks/event-sinks.ts";

/** The local cloud's event log, in its state dir (next to the config). */
export const LOCAL_EVENTS_FILE = "events.jsonl";

export interface LocalEbs {
  readonly store: TargetStore;
  /** The EBS direct API stand-in `tidemark local` runs. */
  readonly ebsEndpoint: string;
  readonly region: string;
}

export function localTaskSettings(eventsFile: string, ebs?: LocalEbs): TaskSettings {
  const events = new FileEventSink(eventsFile);
  return {
    enabled: true,
    events,
    actions: {
      event: new EventAction(events),
      invoke: unavailable("invoke is not available locally: the local cloud runs no Lambda functions (deploy the stack to invoke one)"),
      backup: unavailable("backup is not available locally: AWS Backup needs the deployed stack"),
      "ebs-snapshot": ebs
        ? new EbsSnapshotAction(makeClient(EBSClient, { region: ebs.region, endpoint: ebs.ebsEndpoint, http: IN_PROCESS }), ebs.store)
        : unavailable("ebs-snapshot needs the local EBS stand-in (tidemark local starts one)"),
    },
  };
}
