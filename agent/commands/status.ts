import { existsSync } from "node:fs";
import { join } from "node:path";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { OwnerRecordError, readOwner } from "../../lambdas/applier/ownership.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import type { SetStatus } from "../../contract/layout.ts";
import { configPath, loadConfig } from "../config.ts";
import { Journal, type SetCounters } from "../journal.ts";
import { formatBytes, table } from "../format.ts";
import { stringOption, type Command } from "./command.ts";

export interface SetReport {
  set: string;
  backlog: { records: number; bytes: number };
  sent: { messages: number; bytes: number; lastSeq: number };
  lastSendError: string | null;
  /** The backlog reached the journal limit: new changes wait for a catch-up scan once it drains. */
  journalFull: boolean;
  /** The watcher failed (inotify watches exhausted): the agent scans on a timer instead. */
  watcherProblem: string | null;
  target:
    | {
        reachable: true;
        lastSeqApplied: number;
        state: SetStatus["state"];
        reason?: string;
        lastRejected?: SetStatus["lastRejected"];
        /** Messages refused as not the owner's, and the last of them. */
        refused?: SetStatus["refused"];
        /** The key the target takes the set's changes from (state/<set>/owner.json); this host's is ownerKeyId. */
        owner?: { keyId: string; since: string; how: string } | { error: string };
        updatedAt: string;
      }
    | { reachable: false; error: string };
  /** The target has no gap: everything it applied is in order. */
  inSync: boolean;
  /** In sync, nothing waiting in the journal, and the target applied everything sent. */
  caughtUp: boolean;
}

const EMPTY: SetCounters = { nextSeq: 1, sentSeq: 0, backlogRecords: 0, backlogBytes: 0, messagesSent: 0, bytesSent: 0, lastSendError: null, overflowed: false, watcherProblem: null };

async function ownerOf(store: S3Store, set: string): Promise<{ owner?: { keyId: string; since: string; how: string } | { error: string } }> {
  try {
    const owner = await readOwner(store, set);
    return owner ? { owner: { keyId: owner.keyId, since: owner.since, how: owner.how } } : {};
  } catch (error) {
    if (error instanceof OwnerRecordError) return { owner: { error: error.message } };
    throw error;
  }
}

export async function collectStatus(configFile: string): Promise<SetReport[]> {
  const config = loadConfig(configFile);
  const journal = existsSync(join(config.stateDir, "journal.db")) ? Journal.open(config.stateDir) : undefined;
  const s3 = makeS3Client({ region: config.region, maxAttempts: 2, ...(config.endpoint ? { endpoint: config.endpoint } : {}) });
  const store = new S3Store(s3, config.bucket);
  try {
    return await Promise.all(
      config.sets.map(async (spec): Promise<SetReport> => {
        const counters = journal?.counters(spec.name) ?? EMPTY;
        let target: SetReport["target"];
        try {
          const status = await readSetStatus(store, spec.name);
          target = {
            reachable: true,
            lastSeqApplied: status.lastSeq,
            state: status.state,
            ...(status.reason ? { reason: status.reason } : {}),
            ...(status.lastRejected ? { lastRejected: status.lastRejected } : {}),
            ...(status.refused ? { refused: status.refused } : {}),
            ...(await ownerOf(store, spec.name)),
            updatedAt: status.updatedAt,
          };
        } catch (error) {
          target = { reachable: false, error: (error as Error).message || (error as Error).name };
        }
        const inSync = target.reachable && target.state === "in-sync" && !counters.overflowed;
        return {
          set: spec.name,
          backlog: { records: counters.backlogRecords, bytes: counters.backlogBytes },
          sent: { messages: counters.messagesSent, bytes: counters.bytesSent, lastSeq: counters.sentSeq },
          lastSendError: counters.lastSendError,
          journalFull: counters.overflowed,
          watcherProblem: counters.watcherProblem,
          target,
          inSync,
          caughtUp: inSync && counters.backlogRecords === 0 && target.reachable && target.lastSeqApplied >= counters.sentSeq,
        };
      }),
    );
  } finally {
    journal?.close();
    s3.destroy();
  }
}

export const statusCommand: Command = {
  name: "status",
  help: `Usage: tidemark status [--json] [--config FILE]

Per set: the journal backlog (records and bytes not yet accepted by the
queue), messages and bytes sent, the last seq sent, the last seq the target
applied (read from the target bucket), and whether the set is in sync.
"in sync" means the target has no gap; "caught up" means in sync, nothing
waiting, and the target applied everything sent. Messages the target refused
because they were not signed by the set's owner are named with their sender
and key (nothing of them was applied), and --json shows the owner's key id.

Options:
  --json          print a JSON object (for scripts)
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Examples:
  tidemark status
  tidemark status --json | jq '.sets[] | select(.inSync | not)'`,
  options: { json: { type: "boolean" }, config: { type: "string" } },
  async run(values) {
    const reports = await collectStatus(configPath(stringOption(values.config)));
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ sets: reports }, null, 2)}\n`);
      return 0;
    }
    const rows = reports.map((r) => [
      r.set,
      `${r.backlog.records} (${formatBytes(r.backlog.bytes)})`,
      `${r.sent.messages} msgs, ${formatBytes(r.sent.bytes)}`,
      String(r.sent.lastSeq),
      r.target.reachable ? String(r.target.lastSeqApplied) : "?",
      r.journalFull ? "OUT OF SYNC (journal full)" : !r.target.reachable ? "target unreachable" : r.caughtUp ? "in sync, caught up" : r.inSync ? "in sync" : "OUT OF SYNC",
    ]);
    process.stdout.write(`${table(["SET", "BACKLOG", "SENT", "LAST SENT", "LAST APPLIED", "STATE"], rows)}\n`);
    for (const r of reports) {
      if (!r.target.reachable) process.stdout.write(`${r.set}: target: ${r.target.error}\n`);
      else if (r.target.reason) process.stdout.write(`${r.set}: ${r.target.reason}\n`);
      if (r.target.reachable && r.target.lastRejected) {
        process.stdout.write(`${r.set}: last rejected message ${r.target.lastRejected.messageId} at ${r.target.lastRejected.at}: ${r.target.lastRejected.error}\n`);
      }
      if (r.target.reachable && r.target.refused) {
        const last = r.target.refused.last;
        const who = [last.sender ? `sender ${last.sender}` : "", last.keyId ? `key ${last.keyId}` : ""].filter(Boolean).join(", ");
        process.stdout.write(`${r.set}: refused ${r.target.refused.count} message(s) not from the set's owner; last ${last.messageId} at ${last.at}${who ? ` (${who})` : ""}: ${last.reason}\n`);
      }
      if (r.lastSendError) process.stdout.write(`${r.set}: sending: ${r.lastSendError}\n`);
      if (r.watcherProblem) process.stdout.write(`${r.set}: ${r.watcherProblem}\n`);
      if (r.journalFull) process.stdout.write(`${r.set}: the journal reached its limit; changes are caught up by a scan once the backlog drains\n`);
    }
    return 0;
  },
};
