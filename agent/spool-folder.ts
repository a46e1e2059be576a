// The spool folder (stateDir/spool) holds large files' content between
// capture and send. A cleaner (tmpwatch, a user tidying /var) may delete it,
// or files in it, while the agent runs. Then:
// - a capture recreates the folder before it spools (ensureSpoolFolder), so
//   large-file captures do not fail until a restart;
// - an unsent record whose spooled content is gone can never be sent. Before
//   each send the set looks whether its spool folder is still the one it knew
//   (gone, or made again, means deleted); the transport wrapper
//   (LostSpoolTransport) also finds a single spool file removed, before any
//   upload is tried. The set then takes every such record out of its stream at
//   once (skipLostSpools: a skip each, the path named in `tidemark status` as
//   not replicated, its index entry invalidated), and a catch-up scan captures
//   the paths again, whole. Status names them until the re-captured content
//   is sent; nothing is silently lost.

import { existsSync, statSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Journal } from "./journal.ts";
import { skipRefusedRecord, type SkippedRecord } from "./poison.ts";
import { DeliveryRefusedError, type MessageAttributes, type StagedPayload, type Transport } from "./transport/transport.ts";

/** Recreates the spool folder when it is gone (a cleaner removed it); returns whether it had to. */
export async function ensureSpoolFolder(spoolDir: string): Promise<boolean> {
  return (await mkdir(spoolDir, { recursive: true })) !== undefined;
}

/** A staged payload's spool file is gone: the record can never be sent as journaled. */
export class SpoolContentLostError extends DeliveryRefusedError {
  override name = "SpoolContentLostError";
}

/**
 * A transport that checks a staged payload's spool file before handing it on:
 * a gone file is refused at once (no retries: it will not come back), and
 * `onLost` hears of it so the set repairs its other lost records in one go.
 */
export class LostSpoolTransport implements Transport {
  readonly #inner: Transport;
  readonly #onLost: () => void;

  constructor(inner: Transport, onLost: () => void) {
    this.#inner = inner;
    this.#onLost = onLost;
  }

  async stage(payload: StagedPayload): Promise<void> {
    if ("file" in payload.source) {
      const gone = await stat(payload.source.file).then(
        () => false,
        (error: unknown) => (error as NodeJS.ErrnoException).code === "ENOENT",
      );
      if (gone) {
        this.#onLost();
        throw new SpoolContentLostError(`the spooled content of ${payload.key} is gone (${payload.source.file}): something removed it from the agent's spool folder`);
      }
    }
    await this.#inner.stage(payload);
  }

  send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    return this.#inner.send(set, deduplicationId, body, attributes);
  }
}

/** Why a record whose spooled content is gone was skipped, as status names its path. */
export function lostSpoolReason(spoolDir: string): string {
  return `its spooled content was deleted from ${spoolDir}, or cut short or altered there (a cleaner removed or changed the agent's spool folder or files in it); the file is captured again by a scan and sent whole`;
}

/**
 * A task marker whose digest list was spooled goes on without the list: its digest alone still proves the snapshot
 * (its sha256 covers every entry); only the naming of the paths that differ, should it not match, is lost.
 */
export function markerWithoutList(journal: Journal, set: string, seq: number): boolean {
  const change = journal.record(set, seq)?.change;
  if (change?.op !== "task") return false;
  const { content: _lost, digest, ...marker } = change;
  if (!digest?.list) return false;
  const { list: _list, ...counts } = digest;
  journal.replaceRecord(set, seq, { ...marker, digest: counts });
  return true;
}

/**
 * Takes every unsent record of the set whose spool file is gone out of the
 * stream (see the top of this file; a marker only loses its digest's list).
 * Returns what was skipped; the caller runs the catch-up scan that captures
 * the paths again. A verification whose manifest was lost is skipped too: its
 * waiter ends when the target passes it without a report.
 */
export async function skipLostSpools(journal: Journal, set: string): Promise<SkippedRecord[]> {
  const skipped: SkippedRecord[] = [];
  for (const { seq, spool, lost } of journal.unsentSpools(set)) {
    if (!(lost ?? !existsSync(join(journal.spoolDir, spool))) || markerWithoutList(journal, set, seq)) continue;
    const record = await skipRefusedRecord(journal, set, seq, lostSpoolReason(journal.spoolDir));
    if (record) skipped.push(record);
  }
  return skipped;
}

/** The spool folder's identity, or undefined when it is gone: another one means the folder was deleted and made again. */
function folderIdentity(dir: string): string | undefined {
  const st = statSync(dir, { throwIfNoEntry: false });
  return st && `${st.dev}:${st.ino}`;
}

/**
 * One set's repair of lost spooled content: before each send, `repair` looks
 * whether the spool folder is still the one it knew, or whether the transport
 * it sends through noted a lost file; then it skips the set's lost records and
 * runs the catch-up scan (a failed one is named and retried by the capture).
 */
export class SetSpoolRepair {
  readonly #journal: Journal;
  readonly #set: string;
  readonly #rescan: () => Promise<void>;
  readonly #onSkipped: (skipped: SkippedRecord[]) => void;
  #lost = false;
  #folder: string | undefined;

  constructor(journal: Journal, set: string, rescan: () => Promise<void>, onSkipped: (skipped: SkippedRecord[]) => void) {
    this.#journal = journal;
    this.#set = set;
    this.#rescan = rescan;
    this.#onSkipped = onSkipped;
    this.#folder = folderIdentity(journal.spoolDir);
  }

  /** The set's transport, checking spool files before it stages them. */
  wrap(transport: Transport): Transport {
    return new LostSpoolTransport(transport, () => {
      this.#lost = true;
    });
  }

  /** A journaled content file was found gone while packing (journal-content.ts): repairs now. */
  repairLost(): Promise<void> {
    this.#lost = true;
    return this.repair();
  }

  /** After a loss: the set's lost records become skips, the folder is there again, and a scan re-captures them. */
  async repair(): Promise<void> {
    const folder = folderIdentity(this.#journal.spoolDir);
    if (!this.#lost && folder !== undefined && folder === this.#folder) return;
    this.#lost = false;
    await ensureSpoolFolder(this.#journal.spoolDir);
    this.#folder = folderIdentity(this.#journal.spoolDir);
    const skipped = await skipLostSpools(this.#journal, this.#set);
    if (skipped.length > 0) this.#onSkipped(skipped);
    // The record the transport refused was skipped by the sender already: its path needs the scan all the same.
    await this.#rescan();
  }
}
