// Keeping one set's journal and the target's checkpoint in one chain: before
// the first send, a journal the target is ahead of begins a new generation;
// afterwards, a set the target marks out of sync is brought back with a
// resync and a mirror behind it.

import type { SetStatus } from "../contract/layout.ts";
import { CaptureRetry, type CaptureRetryOptions } from "./capture-retry.ts";
import { awaitingGeneration, continuityBreak } from "./continuity.ts";
import type { JournalGeneration } from "./journal.ts";
import type { PendingRecovery } from "./pending-recoveries.ts";
import { seedIndexFromTarget, TargetUnreachableError, type TargetFileLookup } from "./recovery-baseline.ts";
import { assertRootAnswers, type SetContext } from "./set-context.ts";
import type { SetOperations } from "./set-operations.ts";

export interface RecoveryOptions {
  /** Reads the applier's status of the set; without it there is nothing to check. */
  readonly targetStatus?: (set: string) => Promise<SetStatus | undefined>;
  /**
   * How the set is brought back (owed: a recovery begun before, run again; resyncPending: a resync this process
   * journaled is not applied yet, so the run need not journal another); @default a full mirror (resync).
   */
  readonly recover?: (set: string, reason: string, owed?: PendingRecovery, resyncPending?: boolean, compare?: () => Promise<void>) => Promise<void>;
  /** When an owed recovery that failed runs again (the backoff of capture-retry.ts). @default 1 s, doubling to 5 minutes */
  readonly retry?: CaptureRetryOptions;
  /** Told every status read, for what follows the target's progress (busy files wait for their last version to be applied). */
  readonly onTargetStatus?: (status: SetStatus) => void;
  /** Reads the target's live file at a path: a lost journal then resends only what the target lacks (recovery-baseline.ts). */
  readonly targetFile?: TargetFileLookup;
  /**
   * Why the status's last rejected message calls for a recovery (an older applier refused a whole pack this agent
   * sent, and the target has not passed it since: applier-accepts.ts), or undefined when it does not.
   */
  readonly refusal?: (status: SetStatus) => string | undefined;
}

/** A comparison the target did not answer is logged by #baseline and fails the recovery awaiting it; the set's first scan goes on. */
function comparisonFailed(error: unknown): void {
  if (!(error instanceof TargetUnreachableError)) throw error;
}

export class SetRecovery {
  readonly #context: SetContext;
  readonly #operations: SetOperations;
  readonly #options: RecoveryOptions;
  /** The check of the journal's continuity with the target, once it succeeded (or while it runs). */
  #continuity: Promise<void> | undefined;
  /** The continuity check read the target: a recovery owed from before was run again (or a new one began) there. */
  #continuityChecked = false;
  /** Paces the runs of an owed recovery that keeps failing: each one journals a resync and a verification. */
  readonly #retry: CaptureRetry;
  /** The target's status last read, for what a run of an owed recovery still needs. */
  #lastStatus: SetStatus | undefined;
  /** The comparison with the target of a generation (recovery-baseline.ts): false when it found no resync to run behind. */
  #compared: { generation: string; done: Promise<boolean> } | undefined;
  /** The rejected message this process began a recovery for: once is enough (its resync supersedes what it held). */
  #refusalRecovered: string | undefined;

  constructor(context: SetContext, operations: SetOperations, options: RecoveryOptions) {
    this.#context = context;
    this.#operations = operations;
    this.#options = options;
    this.#retry = new CaptureRetry(async () => {
      if (!this.#context.journal.recoveries.running(this.#context.spec.name)) this.#resume(this.#lastStatus);
    }, options.retry);
  }

  /** The set's root is back after a hold: a recovery owed (it failed on the hold) runs again now, not after its backoff. */
  resumeOwed(): void {
    const { journal, spec } = this.#context;
    if (this.#continuityChecked && !journal.recoveries.running(spec.name)) this.#resume(this.#lastStatus);
  }

  /** The agent stops: no owed recovery runs again in this process. */
  stop(): void {
    this.#retry.stop();
  }

  /**
   * Recovers the set when the target marks it out of sync, unless a resync or a new generation is already on its
   * way; otherwise runs again a recovery still owed that no longer runs (it failed).
   */
  async checkTarget(): Promise<void> {
    const { journal, spec } = this.#context;
    const status = await this.#options.targetStatus?.(spec.name);
    if (status) this.#options.onTargetStatus?.(status);
    this.#lastStatus = status;
    if (!status || status.state !== "out-of-sync") {
      if (status && this.#continuityChecked && this.#recoverRefused(status)) return;
      // A recovery that failed in this process (its wait timed out) is owed still: run it again rather than at the next start only.
      if (this.#continuityChecked && !journal.recoveries.running(spec.name)) this.#retryOwed();
      return;
    }
    // Two writers on the journal (a copy of this host sends too): the target holds every message, a resync too, until an operator adopts the set.
    if (status.twoWriters) return;
    const generation = journal.sets.generation(spec.name);
    // Held for records of this generation that came without its resync: only a resync sent after them is on its way.
    const heldFrom = status.heldGeneration?.id === generation.id ? status.heldGeneration.seq : undefined;
    // A resync asked for and not journaled yet (its look at the root first) is on its way too.
    if (this.#operations.resyncAsked) return;
    if (heldFrom !== undefined ? this.#operations.resyncSeq > heldFrom : this.#operations.resyncSeq > status.lastSeq || awaitingGeneration(generation, status)) return;
    await this.#recover(status.reason ?? "target out of sync");
  }

  /**
   * The target, in sync, refused messages already sent past its checkpoint (its applier stopped reading what they
   * carried: applier-accepts.ts): nothing after them reached it to show a gap, so the set is recovered now, in the
   * background. Judged on every status read, not on a change this process saw: a restart, or a message packed
   * ahead of the change, would skip it. Not while a resync after the checkpoint is on its way or a recovery is owed
   * (run again by #retryOwed), and once per rejected message. Out of sync, checkTarget's own recovery covers it.
   */
  #recoverRefused(status: SetStatus): boolean {
    const reason = this.#options.refusal?.(status);
    const rejected = status.lastRejected?.messageId;
    if (reason === undefined || rejected === undefined || rejected === this.#refusalRecovered) return false;
    const { journal, spec, log } = this.#context;
    const sent = journal.sets.counters(spec.name).sentSeq;
    const generation = journal.sets.generation(spec.name).id;
    if (sent <= status.lastSeq || (status.generation !== undefined && status.generation !== generation) || this.#operations.resyncSeq > status.lastSeq || this.#operations.resyncAsked) return false;
    if (journal.recoveries.running(spec.name) || journal.recoveries.of(spec.name)) return false;
    this.#refusalRecovered = rejected;
    this.#recover(reason).catch((error: unknown) => log.error(`the recovery failed; run \`tidemark mirror ${spec.name} --mode diff\``, { set: spec.name, error: String(error) }));
    return true;
  }

  /**
   * Once, before the set's first send (DESIGN 8): a journal the target is
   * ahead of begins a new generation, and the set is mirrored behind its
   * resync, so no record of it is dropped as a duplicate. Retried on the next
   * send when the target's status cannot be read.
   */
  checkContinuity(signal?: AbortSignal): Promise<void> {
    this.#continuity ??= this.#checkContinuity(signal).catch((error: unknown) => {
      this.#continuity = undefined;
      throw error;
    });
    return this.#continuity;
  }

  /** signal: the agent stops while it starts; the comparison with the target then ends early. */
  async #checkContinuity(signal?: AbortSignal): Promise<void> {
    const targetStatus = this.#options.targetStatus;
    if (!targetStatus) return;
    const { journal, spec, log } = this.#context;
    const set = spec.name;
    const status = await targetStatus(set);
    const reason = continuityBreak(journal.sets.generation(set), journal.sets.counters(set).nextSeq - 1, status);
    this.#continuityChecked = true;
    this.#lastStatus = status;
    if (!reason) {
      // A recovery stopped part way may have compared little of the tree with the target: what the index does not
      // know yet is compared now, behind the resync the run again journals, and before its verification.
      const compare = () => this.#compareWithTarget(journal.sets.generation(set), signal);
      if (this.#resume(status, compare)) await compare().catch(comparisonFailed);
      return;
    }
    await this.#holdIfEmptied(status);
    // A held root (missing, swapped, empty, not answering) is no source to resync the target from: no generation
    // begins and nothing is journaled; the check runs again before the next send, and when the root is back.
    await assertRootAnswers(this.#context, "the recovery after the journal's continuity break waits");
    const generation = journal.sets.beginGeneration(set);
    log.warn("the target is ahead of this journal; beginning a new journal generation", { set, generation: generation.id, reason });
    // The recovery journals its resync at once; the rest of it (a verification) waits on the stream, which waits
    // on this check: it goes on in the background, and only the resync (or full mirror) is awaited, so nothing
    // of the new generation is sent ahead of it.
    const compare = () => this.#compareWithTarget(generation, signal);
    this.#recover(`new journal generation ${generation.id}: ${reason}`, undefined, false, compare).catch((error: unknown) =>
      log.error(`the mirror after a journal generation change failed; run \`tidemark mirror ${set} --mode diff\``, { set, error: String(error) }),
    );
    // Before the set's first scan too: it would journal whole what the comparison finds the target holds.
    await compare().catch(comparisonFailed);
  }

  /**
   * A journal that knows nothing of the set (lost, or new) has no index to tell an empty mount point from the set's
   * root by; the target does: it applied the set's records. An empty root then is held (root-empty), never mirrored
   * over the target's copy, until it holds files again or an operator accepts it (accept-root).
   */
  async #holdIfEmptied(status: SetStatus | undefined): Promise<void> {
    const { journal, spec, log } = this.#context;
    const set = spec.name;
    if (spec.volume || !status || status.lastSeq === 0 || journal.index.entryCount(set) > 0) return;
    // Looked at within its time limit first: a root not answering is held so, and not listed here.
    if (await this.#context.checkRoot()) return;
    const known = journal.roots.of(set);
    if (known?.accepted === true || known?.hold || !(await journal.roots.isEmpty(spec.root))) return;
    const hold = journal.atomically(() =>
      journal.roots.hold(set, spec.root, {
        ok: false,
        state: "root-empty",
        expected: `the files the target holds of the set (it applied seq ${status.lastSeq}; this journal knows none of them: lost or new)`,
        found: "an empty folder",
      }),
    );
    log.error(`set held (${hold.state}): nothing of it is journaled until its root holds files again or is accepted`, { set, root: spec.root, expected: hold.expected });
  }

  /**
   * The comparison of a generation, once: the continuity check queues it ahead of the first scan, and the recovery
   * awaits it before its verification (not left to the lane's order). Run again when the one before found no resync
   * journaled yet to run behind.
   */
  #compareWithTarget(generation: JournalGeneration, signal?: AbortSignal): Promise<void> {
    const run = () => this.#context.exclusive(() => this.#baseline(generation, signal));
    const earlier = this.#compared?.generation === generation.id ? this.#compared.done : undefined;
    const done = earlier ? earlier.then((ran) => ran || run()) : run();
    this.#compared = { generation: generation.id, done };
    return done.then(() => undefined);
  }

  /**
   * A journal the target is ahead of (lost: its index empty; restored from an
   * older copy: its index old) learns from the target what it already holds
   * before any scan journals the set's files with their content
   * (recovery-baseline.ts). Only behind the new generation's resync: a
   * recovery that journaled none yet is left to send everything.
   */
  async #baseline(generation: JournalGeneration, signal?: AbortSignal): Promise<boolean> {
    const lookup = this.#options.targetFile;
    const { journal, spec, log } = this.#context;
    if (!lookup || spec.volume) return true;
    if (this.#operations.resyncSeq < generation.sinceSeq) return false;
    try {
      const report = await seedIndexFromTarget(journal, spec, lookup, signal);
      log.info("compared the source with the target: only what differs is sent", { set: spec.name, ...report });
      if (report.metadataOnly > 0) this.#context.wake();
    } catch (error) {
      // The target did not answer: the recovery awaiting this fails, stays owed and runs again after its backoff.
      if (error instanceof TargetUnreachableError) {
        log.error(error.message, { set: spec.name });
        throw error;
      }
      // What was proven so far stays indexed; the scan sends everything else whole.
      log.warn("could not compare the source with the target; the scan sends the files not compared whole", { set: spec.name, error: String(error) });
    }
    return true;
  }

  /**
   * An owed recovery that failed runs again after a wait that doubles while it keeps failing (each run journals a
   * resync and a verification), and not while the set's sends fail: the run waits on the stream, so it cannot help.
   */
  #retryOwed(): void {
    const { journal, spec } = this.#context;
    if (!journal.recoveries.of(spec.name)) {
      this.#retry.succeeded();
      return;
    }
    if (journal.sets.counters(spec.name).lastSendError !== null) return;
    this.#retry.failed();
  }

  /**
   * A recovery the agent was stopped in (pending-recoveries.ts) runs again: its resync may be journaled, even
   * applied, so the journal continues the target's chain, yet the verification behind it never ran. Like the
   * recovery after a break, it goes on in the background; its resync is journaled ahead of the first scan's records.
   * Returns whether one was owed.
   */
  #resume(status: SetStatus | undefined, compare?: () => Promise<void>): boolean {
    const { journal, spec, log } = this.#context;
    const owed = journal.recoveries.of(spec.name);
    if (!owed) return false;
    log.warn("a recovery of the set did not finish; running it again", { set: spec.name, since: owed.since, mode: owed.mode, reason: owed.reason });
    // A resync a failed run journaled and the target has not applied yet restarts the chain when it is: another would only add to the backlog.
    const resyncPending = status !== undefined && this.#operations.resyncSeq > status.lastSeq;
    this.#recover(owed.reason, owed, resyncPending, compare).catch((error: unknown) =>
      log.error(`the recovery owed since ${owed.since} failed; it runs again after a wait, or run \`tidemark mirror ${spec.name} --mode diff\``, { set: spec.name, error: String(error) }),
    );
    return true;
  }

  /** Brings the set back in line with a resync and a mirror behind it. */
  /** compare: the comparison with the target (a journal the target is ahead of), awaited before the verification. */
  async #recover(reason: string, owed?: PendingRecovery, resyncPending = false, compare?: () => Promise<void>): Promise<void> {
    const { spec, log } = this.#context;
    const recover = this.#options.recover;
    if (!recover) {
      log.warn("target out of sync; resyncing with a full mirror", { set: spec.name, reason });
      await this.#operations.resync(reason);
      await compare?.();
      return;
    }
    // An owed recovery was logged as such by #resume.
    if (!owed) log.warn("target out of sync; recovering", { set: spec.name, reason });
    await recover(spec.name, reason, owed, resyncPending, compare);
  }
}
