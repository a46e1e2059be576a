// Recovery drills (`tidemark drill`): a recovery point restored into a
// scratch folder, checked entry by entry against its manifest, optionally
// checked by the application, and timed. The agent runs the drill and sends
// its report inline in the set's stream (a `drill` record); the applier
// writes it to drills/<set>/<id>.json and counts it as a metric.

import { z } from "zod";

/** Paths named in a report that travels; the agent prints them all, the bucket keeps the first ones. */
export const MAX_REPORTED_PROBLEMS = 200;
/** Bytes of JSON the problems of a report may take: the report travels inside one queue message. */
export const MAX_REPORTED_PROBLEM_BYTES = 96 * 1024;
/** Characters of the application check's output kept in a report. */
export const MAX_CHECK_OUTPUT_CHARS = 4096;

export const DrillIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/, "a drill id is 1-80 letters, digits, '.', '_' or '-'");

export const DrillReportSchema = z.object({
  id: DrillIdSchema,
  set: z.string().max(64),
  passed: z.boolean(),
  startedAt: z.string().max(64),
  finishedAt: z.string().max(64),
  /** What was restored: a snapshot (or, once it exists, a point in time). */
  recoveryPoint: z.object({
    kind: z.enum(["snapshot", "point-in-time"]),
    id: z.string().max(256),
    /** When the source was in the state restored. */
    takenAt: z.string().max(64),
    taskId: z.string().max(80).optional(),
    seq: z.number().int().nullable().optional(),
  }),
  /** Recovery time: how long restoring and checking took. */
  rto: z.object({ restoreMs: z.number().int().min(0), verifyMs: z.number().int().min(0), checkMs: z.number().int().min(0), totalMs: z.number().int().min(0) }),
  /** Recovery point: how old the restored state was when the drill started, and how far behind the source the target was then (the marker's insert-to-apply time), when known. */
  rpo: z.object({ ageMs: z.number().int(), lagMs: z.number().int().nullable() }),
  entries: z.number().int().min(0),
  bytes: z.number().int().min(0),
  /** Entries that did not restore or do not match the recovery point, with why (the first MAX_REPORTED_PROBLEMS). */
  problems: z.array(z.object({ path: z.string().max(4096), reason: z.string().max(1024) })).max(MAX_REPORTED_PROBLEMS),
  problemCount: z.number().int().min(0),
  /** The application check run in the restored tree. */
  check: z
    .object({
      command: z.string().max(4096),
      passed: z.boolean(),
      code: z.number().int().nullable(),
      timedOut: z.boolean(),
      output: z.string().max(MAX_CHECK_OUTPUT_CHARS),
      ms: z.number().int().min(0),
    })
    .optional(),
  /** Where the tree was restored, and whether it was kept (--keep). */
  scratch: z.object({ path: z.string().max(4096), kept: z.boolean() }),
  /** The host that ran the drill. */
  host: z.string().max(256).optional(),
  /** How many files of the recovery point kept changing while its marker read them (possibly torn: restored as read). */
  tornCount: z.number().int().min(1).optional(),
});
export type DrillReport = z.infer<typeof DrillReportSchema>;
