// Wires a running agent from a config: clients, journal, retrying transport,
// target status reader. Shared by `tidemark run` and `tidemark local --source`.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { EVENT_TYPES, EventBridgeSink, type EventSink, FileEventSink, latestDrillReport, makeClient, makeS3Client, makeSqsClient, readApplierAnnouncement, readOwner, readPruneReport, readSetStatus, readVerifyReport, S3Store, type ClientOptions } from "../lambdas/target/index.ts";
import { z } from "zod";
import { TaskFieldsSchema } from "../contract/tasks.ts";
import { Agent } from "./agent.ts";
import { clientOptionsOf } from "./aws-options.ts";
import { STAGE_CONCURRENCY } from "./sender.ts";
import { DrillReportSchema } from "../contract/drills.ts";
import { DrillScheduler } from "./drill-schedule.ts";
import { sendKeptDrillReports, sweepKeptDrillReports } from "./drill-kept.ts";
import { controlSocketPath, startControlServer, type ControlServer } from "./control.ts";
import { MIRROR_MODES, queueTask, recoverSet, runMirror, runPrune, runVerify, type OperationDeps, type Progress } from "./operations.ts";
import type { AgentConfig } from "./config.ts";
import { checkRoots } from "./root-places.ts";
import { Journal } from "./journal.ts";
import { journalFault, JournalCorruptError } from "./journal-faults.ts";
import { markJournalCorrupt, openAgentJournal } from "./journal-aside.ts";
import { RootLookProcess } from "./root-look-process.ts";
import type { RootUnansweredError } from "./root-watch.ts";
import { interruptible } from "./interrupt.ts";
import { ProblemFile } from "./problem-file.ts";
import type { Logger } from "./log.ts";
import { cachedAnnouncement } from "./applier-accepts.ts";
import { checkTargetAtStart } from "./start-check.ts";
import { acquireStateLock } from "./state-lock.ts";
import { forgetUploadsLeft } from "./staged-uploads.ts";
import { RUN_COMMAND, servedRoutes } from "./command-agent.ts";
import { markerRunning } from "./task-results.ts";
import { targetFileReader } from "./recovery-baseline.ts";
import { AwsTransport } from "./transport/aws.ts";
import { RateLimitedTransport } from "./transport/bandwidth.ts";
import { RetryingTransport } from "./transport/retry.ts";
import { SigningTransport } from "./transport/signing.ts";
import { loadOrCreateOwnerKey, ownerKeyPath } from "./owner-key.ts";
import type { MessageAttributes, StagedPayload, Transport } from "./transport/transport.ts";

export interface RunningAgent {
  readonly agent: Agent;
  /** What verify and mirror need besides the agent: the target's reports and applied seqs. */
  operations(onProgress?: (progress: Progress) => void): OperationDeps;
  /** Resolves with the reason when the agent cannot go on (a corrupt journal): stop it and exit non-zero. */
  readonly failed: Promise<Error>;
  stop(): Promise<void>;
}

const VerifyRequest = z.object({ set: z.string(), deep: z.boolean().default(false), repair: z.boolean().default(false) });
const MirrorRequest = z.object({ set: z.string(), mode: z.enum(MIRROR_MODES) });
const TaskRequest = z.object({ set: z.string(), fields: TaskFieldsSchema, onQueue: z.string().optional(), onTransmit: z.string().optional() });
const PruneRequest = z.object({ set: z.string(), keep: z.number().int().min(0) });
/** A drill's report, journaled from the request itself; the set's reports kept earlier (drill-kept.ts) go with it. */
const DrillReportRequest = z.object({ set: z.string(), report: DrillReportSchema });

/**
 * Where the agent announces received markers (ONRECEIVE): the stack's bus, or the local cloud's event log. The
 * EventBridge client is loaded only for a bus (~20 ms of CPU at every start otherwise).
 */
async function receivedEvents(config: AgentConfig, clientOptions: ClientOptions): Promise<EventSink | undefined> {
  if (config.tasks.eventsFile) return new FileEventSink(config.tasks.eventsFile);
  if (!config.tasks.eventBus) return undefined;
  const { EventBridgeClient } = await import("@aws-sdk/client-eventbridge");
  return new EventBridgeSink(makeClient(EventBridgeClient, clientOptions), config.tasks.eventBus);
}

/** Routes each set's calls through its own retry wrapper, so a failing set records its own error. */
class PerSetRetry implements Transport {
  readonly #bySet = new Map<string, RetryingTransport>();
  readonly #make: (set: string) => RetryingTransport;
  constructor(make: (set: string) => RetryingTransport) {
    this.#make = make;
  }
  #for(set: string): RetryingTransport {
    let transport = this.#bySet.get(set);
    if (!transport) {
      transport = this.#make(set);
      this.#bySet.set(set, transport);
    }
    return transport;
  }
  stage(payload: StagedPayload): Promise<void> {
    return this.#for(payload.set).stage(payload);
  }
  send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    return this.#for(set).send(set, deduplicationId, body, attributes);
  }
}

/**
 * The sets an existing journal holds a root of (set-roots.ts), read before the state folder is locked: their root
 * gone at start holds them rather than refusing to start the agent; a new set's missing folder is a config error.
 */
function journaledSets(stateDir: string): Set<string> {
  if (!existsSync(join(stateDir, "journal.db"))) return new Set();
  try {
    const journal = Journal.open(stateDir, { reader: true });
    try {
      return new Set(journal.roots.tracked());
    } finally {
      journal.close();
    }
  } catch {
    // The start opens it again and names its problem.
    return new Set();
  }
}

/** The file status reads a full disk from; an agent started on a disk already full goes on without it. */
function openProblemFile(stateDir: string, log: Logger): ProblemFile | undefined {
  try {
    return ProblemFile.open(stateDir);
  } catch (error) {
    log.warn("cannot record problems for status in the state folder", { stateDir, error: String(error) });
    return undefined;
  }
}

/** The next start sets the journal aside (journal-aside.ts); a mark not written leaves that to its quick_check. */
function leaveCorruptMark(stateDir: string, error: JournalCorruptError, log: Logger): void {
  try {
    markJournalCorrupt(stateDir, error);
  } catch (markError) {
    log.warn("could not mark the journal corrupt for the next start", { error: String(markError) });
  }
}

/**
 * Starts the agent. `signal` (SIGINT/SIGTERM while it starts) interrupts the start at its next step, a target that
 * does not answer included: everything is released and StartInterruptedError thrown.
 */
export async function startAgent(
  config: AgentConfig,
  log: Logger,
  options: { ignorePaths?: string[]; scheduleDrills?: boolean; signal?: AbortSignal; /** The command the agent runs for (command-agent.ts). */ command?: string; /** How often `tidemark run` sends kept drill reports (drill-kept.ts). */ keptSweepMs?: number; /** Where the key's place is told (a copied state folder warned of); else `log`. */ ownerKeyLog?: Logger; /** A root look process the caller started early (run.ts), the agent's from now on: used if made for this config's roots, else closed. */ rootLook?: RootLookProcess } = {},
): Promise<RunningAgent> {
  const knownSets = journaledSets(config.stateDir);
  // The sets' roots are looked at in a process of their own: a hung network file system's stat holds a thread of
  // its, not of the agent, which can then still stop (root-look-process.ts). One process for the start's checks and
  // the running agent's looks (each start of one costs a Node start); one whose check of a root did not answer is
  // replaced, its stuck thread killed with it, so that the running agent's look at that root is the only one.
  let rootLook = options.rootLook?.fits(config.sets.length + 1) ? options.rootLook : new RootLookProcess(config.sets.length + 1);
  if (options.rootLook !== rootLook) options.rootLook?.close();
  let unanswered: readonly RootUnansweredError[];
  try {
    // A set the journal already replicated is not refused for its root here: the agent holds it (set-roots.ts).
    unanswered = await checkRoots(config, (set) => knownSets.has(set), rootLook);
  } catch (error) {
    rootLook.close();
    throw error;
  }
  if (unanswered.length > 0) {
    rootLook.close();
    rootLook = new RootLookProcess(config.sets.length + 1);
  }
  for (const error of unanswered) log.warn("cannot tell whether this root overlaps another set's: compared by its path as written", { root: error.root, error: error.message });
  // Every set may stage its payloads at once, besides status reads, verifications and drills.
  const clientOptions = clientOptionsOf(config, { maxAttempts: 1, maxSockets: config.sets.length * (STAGE_CONCURRENCY + 1) + 16 });
  // Before anything in the state folder is written: one agent per state folder.
  const command = options.command ?? RUN_COMMAND;
  let lock: ReturnType<typeof acquireStateLock>;
  try {
    lock = acquireStateLock(config.stateDir, command);
  } catch (error) {
    rootLook.close();
    throw error;
  }
  let journal: Journal;
  try {
    // Before the target is asked: a corrupt journal is set aside whatever the state of the target, and the new
    // journal's generation makes the target resync (journal-aside.ts).
    journal = openAgentJournal(
      config.stateDir,
      log,
      (opened) => {
        forgetUploadsLeft(opened);
        // A wait for the bandwidth budget an agent that stopped left recorded is over.
        for (const set of config.sets) if (opened.sets.bandwidthWaitSince(set.name) !== null) opened.sets.recordBandwidthWait(set.name, null);
      },
      { lookRoot: rootLook },
    );
  } catch (error) {
    rootLook.close();
    lock.release();
    throw error;
  }
  const sqs = makeSqsClient(clientOptions);
  const s3 = makeS3Client(clientOptions);
  /** What a failed start gives back before it throws. */
  const releaseAll = () => {
    rootLook.close();
    journal.close();
    lock.release();
    sqs.destroy();
    s3.destroy();
  };
  let owner: ReturnType<typeof loadOrCreateOwnerKey>;
  let events: EventSink | undefined;
  try {
    await interruptible(checkTargetAtStart(config, options.signal ? { signal: options.signal } : {}), options.signal, "checking the target");
    // A host that cannot prove it owns its sets sends nothing the target would take.
    owner = loadOrCreateOwnerKey(config.stateDir, { log: options.ownerKeyLog ?? log });
    // A key made for a copied state folder was warned of with why.
    if (owner.created && !owner.copied) log.info("created this host's signing key: the target registers it as the owner of each new set", { file: ownerKeyPath(config.stateDir), keyId: owner.key.keyId });
    events = await receivedEvents(config, clientOptionsOf(config));
  } catch (error) {
    releaseAll();
    throw error;
  }
  // Opened once this process owns the state folder (the control socket): a second agent must not clear it.
  const problems: { file?: ProblemFile } = {};
  let fail: (error: Error) => void = () => undefined;
  const failed = new Promise<Error>((resolve) => (fail = resolve));
  const controller = new AbortController();
  const aws = new AwsTransport({ sqs, s3, queueUrl: config.queueUrl, bucket: config.bucket });
  // One link for every set: the cap is shared, and each retry is paced too.
  const onSendWait = (set: string, waiting: boolean) => journal.sets.recordBandwidthWait(set, waiting ? new Date().toISOString() : null);
  const inner = config.bandwidth ? new RateLimitedTransport(aws, config.bandwidth, { signal: controller.signal, onSendWait }) : aws;
  const perSet = new PerSetRetry(
    (set) =>
      new RetryingTransport(inner, {
        signal: controller.signal,
        onRetry: (error, attempt, delayMs) => {
          journal.sets.recordSendError(set, error.message);
          if (attempt === 1 || attempt % 10 === 0) log.warn("send failed; retrying", { set, attempt, delayMs, error: error.message });
        },
        onRecovered: () => log.info("sending again", { set }),
      }),
  );
  const transport = new SigningTransport(perSet, owner.key);
  const store = new S3Store(s3, config.bucket);
  const agent = new Agent({
    sets: config.sets,
    journal,
    transport,
    targetStatus: (set) => readSetStatus(store, set),
    applierAnnouncement: cachedAnnouncement(() => readApplierAnnouncement(store)),
    targetFile: targetFileReader(store),
    owner: { hostKeyId: owner.key.keyId, lookup: (set) => readOwner(store, set) },
    ignorePaths: [config.stateDir, ...(options.ignorePaths ?? [])],
    compression: config.compression,
    journalLimitBytes: config.journalLimitBytes,
    lingerMs: config.lingerMs,
    busyFiles: { intervalMs: config.captureIntervalMs },
    ...(events
      ? {
          announceReceived: async (set, markers) => {
            for (const marker of markers) {
              const detail = { set, taskId: marker.id, seq: marker.seq, action: marker.fields.action, ...(marker.fields.label ? { label: marker.fields.label } : {}), insertedAt: marker.fields.insertedAt };
              // The marker is in the queue whatever happens to its announcement.
              await events.put(EVENT_TYPES.received, detail).catch((error: unknown) => log.warn("task received event not sent", { set, task: marker.id, error: String(error) }));
            }
          },
        }
      : {}),
    onFatal: (error) => {
      leaveCorruptMark(config.stateDir, error, log);
      fail(error);
    },
    onJournalProblem: (problem) => problems.file?.write(problem),
    rescanMs: config.rescanSeconds * 1000,
    pollingScanMs: config.fallbackScanSeconds * 1000,
    // Not awaited: a recovery waits on the stream, and the status poll of the other sets goes on meanwhile.
    recover: async (set, reason, owed, resyncPending, compare) => {
      // A recovery owed from before a stop runs again as it began (its mode and what it does with orphans).
      const mode = MIRROR_MODES.find((m) => m === owed?.mode) ?? config.mirror.afterOutOfSync;
      recoverSet(operations(), set, reason, mode, owed?.orphans ?? config.orphans, resyncPending, compare).then(
        () => log.info("set recovered", { set, mode }),
        (error: unknown) => {
          // Stopping ends the recovery's wait on the target; the next start recovers the set again.
          if (!controller.signal.aborted) log.error("recovery failed; it runs again after a wait that doubles while it keeps failing", { set, error: String(error) });
        },
      );
    },
    log,
  });
  const operations = (onProgress?: (progress: Progress) => void): OperationDeps => ({
    agent,
    readReport: (set, id) => readVerifyReport(store, set, id),
    readPruneReport: (set, id) => readPruneReport(store, set, id),
    targetStatus: (set) => readSetStatus(store, set),
    markerRunning: (set) => markerRunning(store, set),
    ...(onProgress ? { onProgress } : {}),
    // A recovery, verification or prune waiting on a target that does not move must not keep a stopped agent alive.
    signal: controller.signal,
  });
  const knownSet = (set: string) => {
    if (!agent.sets.includes(set)) throw new Error(`no set named "${set}" in ${config.file} (sets: ${agent.sets.join(", ")})`);
    return set;
  };
  // The socket also keeps a second agent off this state dir: one process owns the journal.
  let control: ControlServer;
  try {
    control = await startControlServer(controlSocketPath(config.stateDir), servedRoutes(command, {
      "/verify": async (body, progress) => {
        const request = VerifyRequest.parse(body);
        return runVerify(operations(progress), knownSet(request.set), { deep: request.deep, repair: request.repair, orphans: config.orphans });
      },
      "/mirror": async (body, progress) => {
        const request = MirrorRequest.parse(body);
        return runMirror(operations(progress), knownSet(request.set), request.mode, config.orphans);
      },
      "/task": async (body, progress) => {
        const request = TaskRequest.parse(body);
        return queueTask(operations(progress), knownSet(request.set), request, config);
      },
      "/prune": async (body, progress) => {
        const request = PruneRequest.parse(body);
        return runPrune(operations(progress), knownSet(request.set), request.keep);
      },
      "/drill-report": async (body) => {
        const request = DrillReportRequest.parse(body);
        const set = knownSet(request.set);
        const seq = await agent.journalDrill(set, request.report);
        // Reports of the set kept earlier (no agent took them then, this one was not running) go with it.
        await sendKeptDrillReports(config.stateDir, [set], (kept, report) => agent.journalDrill(kept, report), log);
        return { seq };
      },
    }));
  } catch (error) {
    releaseAll();
    throw error;
  }
  const opened = openProblemFile(config.stateDir, log);
  if (opened) problems.file = opened;
  // Scheduled drills (config `drills`) run in the agent that replicates, not in one a command started for itself.
  let drills: DrillScheduler | undefined;
  let keptSweep: { stop(): Promise<void> } | undefined;
  const stop = async () => {
    await keptSweep?.stop();
    await drills?.stop();
    await control.close();
    controller.abort();
    await agent.stop();
    rootLook.close();
    journal.close();
    problems.file?.close();
    lock.release();
    sqs.destroy();
    s3.destroy();
  };
  try {
    await agent.start(options.signal);
  } catch (error) {
    // Nothing may keep the process alive after a failed start (a corrupt journal): a supervisor must see it exit.
    await stop().catch(() => undefined);
    const fault = journalFault(error, journal.path);
    if (fault instanceof JournalCorruptError) leaveCorruptMark(config.stateDir, fault, log);
    throw fault;
  }
  // Drill reports no agent took in time were kept in the state folder: the agent that replicates sends them all, now
  // and while it runs (one its journal refused when a drill gave it); a command's own agent sends its set's, operate.ts.
  if (command === RUN_COMMAND) keptSweep = sweepKeptDrillReports(config.stateDir, agent.sets, (set, report) => agent.journalDrill(set, report), log, options.keptSweepMs);
  if (config.mirror.onStart !== "scan") {
    const mode = config.mirror.onStart;
    // In the background: the agent replicates meanwhile, and the mirror's verification waits on the stream (while
    // another key owns the set too: the agent's own wait goes on once `tidemark adopt` ends the hold).
    for (const set of agent.sets) {
      runMirror({ ...operations(), whileHeld: "wait" }, set, mode, config.orphans).then(
        (result) => log.info("mirror on start done", { set, mode, repaired: result.verify?.repaired ?? 0 }),
        (error: unknown) => log.error("mirror on start failed", { set, mode, error: String(error) }),
      );
    }
  }
  if (options.scheduleDrills !== false && config.drills.length > 0) {
    drills = new DrillScheduler({
      plans: config.drills,
      run: async (plan, signal) => {
        // Loaded when a drill is due: the restore code it runs is no part of replicating, nor of the agent's start.
        const { runDrill } = await import("./drill.ts");
        const { report } = await runDrill(store, plan.set, { signal, ...(plan.check !== undefined ? { check: plan.check } : {}) });
        await agent.journalDrill(plan.set, report);
        return report;
      },
      lastDrill: async (set) => {
        const last = await latestDrillReport(store, set);
        return last && new Date(last.startedAt);
      },
      log,
    });
    drills.start();
  }
  return { agent, operations, failed, stop };
}
