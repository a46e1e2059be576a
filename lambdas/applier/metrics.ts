// CloudWatch embedded metric format: one log line per batch becomes metrics
// without any API call from the function.

import type { MessageOutcome } from "./applier.ts";

/** The namespace when the deployment sets none (TIDEMARK_METRICS_NAMESPACE). */
export const DEFAULT_METRICS_NAMESPACE = "Tidemark";

export function metricsLine(outcomes: readonly MessageOutcome[], timestamp: number, namespace = DEFAULT_METRICS_NAMESPACE): string {
  let records = 0;
  let bytes = 0;
  let rejected = 0;
  let outOfSync = 0;
  for (const outcome of outcomes) {
    if (outcome.kind === "applied") {
      records += outcome.records;
      bytes += outcome.bytes;
    } else if (outcome.kind === "rejected") rejected += 1;
    else if (outcome.kind === "gap" || outcome.kind === "held") outOfSync = 1;
  }
  return JSON.stringify({
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [
        {
          Namespace: namespace,
          Dimensions: [[]],
          Metrics: [
            { Name: "RecordsApplied", Unit: "Count" },
            { Name: "BytesApplied", Unit: "Bytes" },
            { Name: "MessagesRejected", Unit: "Count" },
            { Name: "SetsOutOfSync", Unit: "Count" },
          ],
        },
      ],
    },
    RecordsApplied: records,
    BytesApplied: bytes,
    MessagesRejected: rejected,
    SetsOutOfSync: outOfSync,
  });
}
