// The agent's look at a tree set's root, at start, every few seconds and right
// before each batch a scan or a capture journals (set-roots.ts says what is
// good): a good root's identity is recorded (also for a journal made before
// roots, or their birth times, were, on its first good check), a bad one holds
// the set, and a held set whose root is back (a remount, a folder moved back,
// `tidemark accept-root` from another process, a network file system answering
// again) resumes.
//
// A look is asynchronous (set-roots.ts RootLook) and may never answer: a stat
// of a hard-mounted NFS root whose server went away blocks the thread doing it
// for good. So the agent's thread never waits on one, a look has a time limit
// (past it the set is held root-unresponsive), and no second look at a root
// starts while one is outstanding: a hung root holds one thread, not one more
// every few seconds until the thread pool (4 threads) and all file I/O with it
// are stuck.

import type { RootHold, RootVerdict } from "./set-roots.ts";
import type { SetContext } from "./set-context.ts";

/** How often a running agent looks at each set's root. */
export const ROOT_CHECK_MS = 3_000;
/** How long a look at a root may take before the set is held root-unresponsive. */
export const ROOT_CHECK_TIMEOUT_MS = 10_000;

/** Arms a look's time limit: calls `expired` once ms passed; returns what disarms it. A test's stand-in fires it by hand. */
export type RootDeadline = (expired: () => void, ms: number) => () => void;

/** A limit's timer this much late: the agent's own thread was busy (a long synchronous transaction), not the root. */
const LATE_MS = 1_000;

/**
 * The limit counts the root's time, not the agent's own pauses. When the timer fires, what came in meanwhile (a look's
 * answer from the look process or the thread pool, read in the loop's next poll) is taken before the limit is; and a
 * timer that fired over a second late (this agent's thread was busy past the limit) gives the look its time again,
 * so that a look of several steps can take the steps the pause held up. A healthy root is then no hung root.
 */
const deadlineTimer: RootDeadline = (expired, ms) => {
  let disarmed = false;
  let timer: NodeJS.Timeout | undefined;
  let after: NodeJS.Immediate | undefined;
  const arm = (wait: number) => {
    const due = performance.now() + wait;
    timer = setTimeout(() => {
      if (performance.now() - due > LATE_MS) {
        arm(ms);
        return;
      }
      after = setImmediate(() => {
        if (!disarmed) expired();
      });
      after.unref();
    }, wait);
    timer.unref();
  };
  arm(ms);
  return () => {
    disarmed = true;
    clearTimeout(timer);
    if (after) clearImmediate(after);
  };
};

/** A look at a root that did not answer within its time limit (a hung network file system, most likely). */
export class RootUnansweredError extends Error {
  override name = "RootUnansweredError";
  readonly root: string;
  constructor(root: string, timeoutMs: number) {
    super(`root ${root} did not answer within ${String(Math.max(1, Math.round(timeoutMs / 1000)))} s (hung network file system?)`);
    this.root = root;
  }
}

/**
 * A command's look at a root (the agent's start, doctor, accept-root), given up on past the time limit: throws
 * RootUnansweredError then (the look itself may never end; a RootLookProcess's close kills what holds it).
 */
export function answerWithin<T>(look: Promise<T>, root: string, options: RootWatchOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? ROOT_CHECK_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const disarm = (options.deadline ?? deadlineTimer)(() => reject(new RootUnansweredError(root, timeoutMs)), timeoutMs);
    look.then(
      (value) => {
        disarm();
        resolve(value);
      },
      (error: unknown) => {
        disarm();
        reject(error);
      },
    );
  });
}

export interface RootWatchOptions {
  /** How long a look may take. @default ROOT_CHECK_TIMEOUT_MS */
  readonly timeoutMs?: number;
  /** @default a timer */
  readonly deadline?: RootDeadline;
}

/** What a look read: the verdict, and for a set held empty whether the entries the journal knows are back. */
interface LookRead {
  readonly verdict: RootVerdict;
  readonly refilled: boolean | undefined;
}

/** A look not answered yet. */
interface Looking {
  readonly begun: Date;
  /** Settles once the look answered, its time limit passed, or the watch stopped: the set's hold then. */
  readonly answer: Promise<RootHold | undefined>;
  settled: boolean;
  settle(hold: RootHold | undefined): void;
  fail(error: unknown): void;
  disarm(): void;
}

export class RootWatch {
  readonly #context: Pick<SetContext, "spec" | "journal" | "log">;
  readonly #onResumed: () => void;
  readonly #timeoutMs: number;
  readonly #deadline: RootDeadline;
  /** The hold this process last saw: a root good again after it resumes the set. */
  #held: RootHold | undefined;
  /** The look under way: never a second one at the root while it runs (a hung one holds its thread for good). */
  #looking: Looking | undefined;
  #stopped = false;

  constructor(context: Pick<SetContext, "spec" | "journal" | "log">, onResumed: () => void, options: RootWatchOptions = {}) {
    this.#context = context;
    this.#onResumed = onResumed;
    this.#timeoutMs = options.timeoutMs ?? ROOT_CHECK_TIMEOUT_MS;
    this.#deadline = options.deadline ?? deadlineTimer;
  }

  /** The set's hold as this process last saw it. */
  get hold(): RootHold | undefined {
    return this.#held;
  }

  /** Whether a look at the root is under way (one that never answers stays so). */
  get looking(): boolean {
    return this.#looking !== undefined;
  }

  /**
   * Looks at the root: holds the set (the hold; undefined when not held), records a good root, resumes a set held
   * before. Settles within the time limit: a look that has not answered by then holds the set root-unresponsive, and
   * is waited for in the background (asked again meanwhile, the answer is that hold, and no new look starts).
   *
   * `fresh`, right before a batch read from the tree is journaled: a look under way may have read the root before
   * the batch read the tree (an unmount in between would pass it, and the batch's deletes with it), so it does not
   * answer for the batch: its hold, if it finds one, does; else a look begun after this call does.
   */
  check(options: { fresh?: boolean } = {}): Promise<RootHold | undefined> {
    if (this.#context.spec.volume) return Promise.resolve(undefined);
    // Stopping, nothing waits on a look; but a batch a capture or scan still running read from the tree is journaled
    // only behind one (an unmount as the system shuts down would otherwise pass it), bounded by its time limit.
    if (this.#stopped && (options.fresh !== true || this.#held)) return Promise.resolve(this.#held);
    const looking = this.#looking;
    // Answered, it is no longer under way: a look starts after it (or one begun since, after this call, is joined).
    if (options.fresh === true && looking) return looking.answer.then((hold) => hold ?? (this.#looking ?? this.#look()).answer);
    return (looking ?? this.#look()).answer;
  }

  /**
   * The agent stops: nothing waits on a look any longer (one that never answers is left to its thread). What waited
   * on one hears the set held (in this process only: the journal records no hold the root did not earn), so a scan or
   * an operation does not go on to read a root that may hang.
   */
  stop(): void {
    this.#stopped = true;
    const looking = this.#looking;
    if (!looking) return;
    this.#looking = undefined;
    looking.disarm();
    const { spec } = this.#context;
    this.#held ??= { set: spec.name, state: "root-unresponsive", root: spec.root, expected: "an answer before the agent stopped", found: `none to the look begun at ${looking.begun.toISOString()}`, since: looking.begun.toISOString() };
    looking.settle(this.#held);
  }

  #look(): Looking {
    let resolve: (hold: RootHold | undefined) => void = () => undefined;
    let reject: (error: unknown) => void = () => undefined;
    const answer = new Promise<RootHold | undefined>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const looking: Looking = {
      begun: new Date(),
      answer,
      settled: false,
      settle: (hold) => {
        looking.settled = true;
        resolve(hold);
      },
      fail: (error) => {
        looking.settled = true;
        reject(error);
      },
      disarm: () => undefined,
    };
    this.#looking = looking;
    looking.disarm = this.#deadline(() => {
      if (!looking.settled) this.#answer(looking, () => this.#unresponsive(looking.begun));
    }, this.#timeoutMs);
    this.#read().then(
      (read) => {
        looking.disarm();
        if (this.#looking !== looking) return;
        this.#looking = undefined;
        // Also after the time limit: a root answering again ends its root-unresponsive hold.
        this.#answer(looking, () => this.#judge(read));
      },
      (error: unknown) => {
        looking.disarm();
        if (this.#looking !== looking) return;
        this.#looking = undefined;
        this.#answer(looking, () => {
          throw error;
        });
      },
    );
    return looking;
  }

  /** Runs what the look found (holds, records, resumes) and settles its answer; an error after the time limit is logged. */
  #answer(looking: Looking, found: () => RootHold | undefined): void {
    try {
      const hold = found();
      if (!looking.settled) looking.settle(hold);
    } catch (error) {
      if (!looking.settled) looking.fail(error);
      else this.#context.log.warn("could not record what the late look at the set's root found; the next look does", { set: this.#context.spec.name, error: String(error) });
    }
  }

  /** Reads the root (asynchronously; may never settle). */
  async #read(): Promise<LookRead> {
    const { spec, journal } = this.#context;
    const verdict = await journal.roots.inspect(spec.name, spec.root, { deleting: true });
    // A root held empty stays held until what the journal knows is back, or an operator accepts it (accept-root).
    const refilled = verdict.ok && journal.roots.held(spec.name)?.state === "root-empty" ? await journal.roots.emptyRootRefilled(spec.name, spec.root) : undefined;
    return { verdict, refilled };
  }

  /** The look answered: holds the set, or records its good root and resumes a set held before. */
  #judge({ verdict, refilled }: LookRead): RootHold | undefined {
    const { spec, journal, log } = this.#context;
    const set = spec.name;
    const known = journal.roots.of(set);
    // A look that failed itself (its process ended: set-roots.ts RootLookError) is no answer: a set held empty stays so.
    if (!verdict.ok && verdict.state === "root-unresponsive" && known?.hold?.state === "root-empty") {
      this.#held = known.hold;
      return known.hold;
    }
    if (!verdict.ok) return this.#hold(journal.atomically(() => journal.roots.hold(set, spec.root, verdict)));
    if (known?.hold?.state === "root-empty" && refilled !== true) {
      this.#held = known.hold;
      return known.hold;
    }
    const moved = known !== undefined && known.root !== spec.root;
    if (!known?.identity || verdict.renumbered || verdict.birthLearned || moved || known.hold) {
      if (verdict.renumbered) log.warn("the set's root has another device number but the same inode, and its birth time or most of its entries: recorded again", { set, root: spec.root, dev: verdict.identity.dev });
      journal.atomically(() => journal.roots.record(set, spec.root, verdict.identity, known?.accepted === true));
    }
    const was = this.#held ?? known?.hold;
    this.#held = undefined;
    if (was) {
      log.info("the set's root is back: resuming with a scan", { set, root: spec.root, was: was.state, since: was.since });
      this.#onResumed();
    }
    return undefined;
  }

  /**
   * The look has not answered in time: the set is held root-unresponsive (nothing of it is journaled, a deletion
   * least of all) until it answers. A set held empty keeps that hold: it ends only once the entries it knew are back.
   */
  #unresponsive(begun: Date): RootHold {
    const { spec, journal, log } = this.#context;
    const set = spec.name;
    const known = journal.roots.held(set);
    if (known?.state === "root-empty") {
      log.warn("the set's root has not answered a look in time; it stays held empty", { set, root: spec.root, timeoutMs: this.#timeoutMs });
      this.#held = known;
      return known;
    }
    const seconds = Math.max(1, Math.round(this.#timeoutMs / 1000));
    const verdict = { ok: false, state: "root-unresponsive", expected: `an answer within ${seconds} s`, found: `none to the look begun at ${begun.toISOString()}` } as const;
    return this.#hold(journal.atomically(() => journal.roots.hold(set, spec.root, verdict)));
  }

  #hold(hold: RootHold): RootHold {
    const { spec, log } = this.#context;
    if (this.#held?.state !== hold.state) {
      log.error(`set held (${hold.state}): nothing of it is journaled until its root is back or accepted`, { set: spec.name, root: spec.root, expected: hold.expected, found: hold.found });
    }
    this.#held = hold;
    return hold;
  }
}
