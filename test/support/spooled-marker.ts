// A snapshot marker whose digest list is journaled as a large set's is: in a
// spool file (`spool`, in the journal's spool folder), which tests then lose
// or keep to see what the sender makes of it.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Harness } from "./harness.ts";

/** Inserts the marker and points its record at `spool`; the file is written (with stand-in bytes) unless `write` is false. */
export async function markerWithSpooledList(h: Harness, set: string, spool: string, write = true): Promise<{ id: string; seq: number }> {
  const marker = await h.agent.insertMarker(set, { fields: { action: "snapshot", timeoutSeconds: 0 } });
  const record = h.journal.record(set, marker.seq)?.change;
  if (record?.op !== "task" || !record.digest?.list) throw new Error("the marker carries no digest list");
  if (write) writeFileSync(join(h.journal.spoolDir, spool), "x");
  h.journal.replaceRecord(set, marker.seq, { ...record, content: { spool } });
  return marker;
}
