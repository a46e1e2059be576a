// The target-side library, as the agent sees it: the store and its S3
// implementation, the AWS clients, uploads in parts, and typed readers of
// what the applier keeps in the bucket (status, task results, snapshots,
// history, verify/prune/drill reports, owner records). The agent imports the
// target side only from here (test/unit/layers.test.ts); the handlers and the
// applier stay behind it.

export type { ObjectHead, ObjectInfo, ObjectStream, StoredObject, TargetStore } from "../store/store.ts";
export { S3Store } from "../store/s3-store.ts";
export { SourceChangedError } from "../store/store.ts";
export * from "../aws-clients.ts";
export * from "./http-settings.ts";
export { SlowTransferError, type MinimumTransfer } from "./slow-transfers.ts";
export { isTransientAwsError } from "../aws-errors.ts";
export { giveBackBody, releaseKeptBodies } from "../http1-pool.ts";
export { MULTIPART_THRESHOLD, PARTS_IN_FLIGHT, putInParts } from "../s3-multipart.ts";

export { latestDrillReport, listTasks, readApplierAnnouncement, readPruneReport, readSetStatus, readTaskResult, readVerifyReport } from "./readers.ts";
export { adoptSet, OwnerRecordError, readOwner, type Adoption } from "./owner.ts";
export { listSnapshots, readBlockManifest, readManifest, readSnapshot, SnapshotError } from "../tasks/snapshots.ts";
export { readBlock } from "../volumes/volume-snapshots.ts";
export { readTimeline, stateAt, type StateAt, type Timeline } from "../history/replay.ts";
export { EVENT_TYPES, type EventSink } from "../tasks/actions.ts";
export { EventBridgeSink, FileEventSink } from "../tasks/event-sinks.ts";
