// The target side on the emulator for a test: the local cloud's target
// (startLocalTarget), with a record of every applied seq, rejection and refusal.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { WireRecord } from "../../contract/wire.ts";
import type { ConfigFile } from "../../agent/config.ts";
import type { TaskSettings } from "../../lambdas/applier/markers.ts";
import type { HistorySettings } from "../../lambdas/history/recorder.ts";
import { LOCAL_REGION, startLocalTarget } from "../../lambdas/local/target.ts";
import type { S3Store } from "../../lambdas/store/s3-store.ts";

export const REGION = LOCAL_REGION;

export interface TestCloud {
  readonly endpoint: string;
  readonly queueUrl: string;
  readonly bucket: string;
  readonly store: S3Store;
  /** Seqs applied per set, in apply order. */
  readonly applied: Map<string, number[]>;
  readonly rejections: string[];
  /** Log lines of messages refused as not from their set's owner. */
  readonly refusals: string[];
  readonly sqs: SQSClient;
  writeConfig(dir: string, sets: ConfigFile["sets"], extra?: Partial<ConfigFile>): string;
  stop(): Promise<void>;
}

export async function startTestCloud(
  options: {
    visibilityTimeoutSeconds?: number;
    port?: number;
    dataDir?: string;
    onApplied?: (set: string, record: WireRecord) => void;
    /** The target's task settings; a function gets the cloud's store (an ebs-snapshot action reads blocks from it). */
    tasks?: TaskSettings | ((store: S3Store) => TaskSettings);
    /** The applier's point-in-time history. @default the applier's */
    history?: HistorySettings;
    /**
     * A versioned bucket, as the stack's and `tidemark local`'s. @default false: these tests were written
     * against the unversioned bucket, where history and snapshots copy replaced content to preserved/.
     */
    versioned?: boolean;
  } = {},
): Promise<TestCloud> {
  const applied = new Map<string, number[]>();
  const rejections: string[] = [];
  const refusals: string[] = [];
  const { tasks } = options;
  const target = await startLocalTarget({
    emulator: { port: options.port ?? 0, versioned: options.versioned ?? false, ...(options.dataDir ? { dataDir: options.dataDir } : {}) },
    visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 5,
    ...(tasks ? { tasks: typeof tasks === "function" ? ({ store }) => tasks(store) : tasks } : {}),
    ...(options.history ? { history: options.history } : {}),
    log: (line) => {
      if (line.includes('"message rejected"')) rejections.push(line);
      if (line.includes('"message refused"')) refusals.push(line);
    },
    observer: {
      applied(set: string, record: WireRecord) {
        const list = applied.get(set) ?? [];
        list.push(record.seq);
        applied.set(set, list);
        options.onApplied?.(set, record);
      },
    },
    poller: { waitTimeSeconds: 1 },
  });
  return {
    endpoint: target.endpoint,
    queueUrl: target.queueUrl,
    bucket: target.bucket,
    store: target.store,
    applied,
    rejections,
    refusals,
    sqs: target.sqs,
    writeConfig(dir, sets, extra = {}) {
      const file = join(dir, "tidemark.config.json");
      // lingerMs: a change reaching an idle sender waits this long for company (the default 2 s, proven in
      // sender-linger.test.ts, made every "write, then wait until it arrived" step of these tests idle for 2 s).
      const config: ConfigFile = { region: REGION, endpoint: target.endpoint, queueUrl: target.queueUrl, bucket: target.bucket, stateDir: "state", lingerMs: TEST_LINGER_MS, sets, ...extra };
      writeFileSync(file, JSON.stringify(config, null, 2));
      return file;
    },
    stop: () => target.stop(),
  };
}

/** The test configs' lingerMs: short, so the linger after an idle spell still runs, without 2 s of idle per change. */
export const TEST_LINGER_MS = 100;

/** Polls until check passes (returns without throwing) or the time is up; then throws the last failure. */
export async function eventually(check: () => Promise<void>, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }
}
