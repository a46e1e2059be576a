// What the applier accepts beyond what every applier of wire v1 reads, so an
// agent newer than its stack sends only what the stack's applier reads.
// The applier stamps it on every set status it writes (SetStatus.accepts), and
// once per process in the stack-wide announcement (for sets with no status
// yet). An older applier writes statuses without it (its schema drops the
// field): a stack rolled back is seen in the next status it writes.

import { z } from "zod";
import { PREFIX, type SetStatus } from "./layout.ts";

/** A message's pack compressed as a whole (MessagePack.encoding, decodedSize), rather than each file on its own. */
export const WHOLE_PACKS = "whole-packs";

/** What this applier accepts: every name an agent may rely on. */
export const APPLIER_ACCEPTS: readonly string[] = [WHOLE_PACKS];

/** Names the agent does not know are ignored: a newer applier may announce more. */
export const AcceptsSchema = z.array(z.string().max(64)).max(64);

/** state/applier.json: what the applier that last started accepts, and when it started (its clock). */
export const APPLIER_ANNOUNCEMENT_KEY = `${PREFIX.state}applier.json`;

export const ApplierAnnouncementSchema = z.object({ accepts: AcceptsSchema, at: z.string() });
export type ApplierAnnouncement = z.infer<typeof ApplierAnnouncementSchema>;

/**
 * Whether a set's applier reads whole packs: as its status says, when an applier that announces stamped it; else as
 * the stack-wide announcement says, when that is newer than the status (the stack was updated since an older applier
 * wrote it, or there is no status yet). Unknown is no: the per-file form is read by every applier.
 */
export function acceptsWholePacks(status: SetStatus | undefined, announcement: ApplierAnnouncement | undefined): boolean {
  if (status?.accepts) return status.accepts.includes(WHOLE_PACKS);
  if (!announcement) return false;
  if (status && Date.parse(announcement.at) <= Date.parse(status.updatedAt)) return false;
  return announcement.accepts.includes(WHOLE_PACKS);
}
