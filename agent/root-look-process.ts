// The agent's looks at its sets' roots (set-roots.ts RootLook), done in a
// process of their own. A stat of a hard-mounted NFS root whose server went
// away never returns and holds the thread doing it. In the agent's own thread
// pool that thread would be one of the 4 every file read shares, and would keep
// the agent from ever exiting: a request under way keeps Node's event loop
// alive, and Node joins the pool's threads at exit, so stopping the agent would
// leave a process that never ends. Here it is a thread of the child's pool
// (one per hung root: root-watch.ts starts no second look at a root while one
// is outstanding), and the agent kills the child when it stops, hung threads
// and all.

import { fork, type ChildProcess } from "node:child_process";
import module from "node:module";
import { fileURLToPath } from "node:url";
import { emptinessOf, lookHere, RootLookError, type RootLook, type RootStat, type StatAndEmpty } from "./set-roots.ts";

/** The child's argument: this module, run with it, answers looks. */
const CHILD_ARG = "--tidemark-root-look";

type LookOp = "stat" | "realpath" | "isEmpty" | "exists" | "statAndEmpty";

interface LookRequest {
  readonly id: number;
  readonly op: LookOp;
  readonly path: string;
}

/** A stat as it crosses the channel (its isDirectory as a flag). */
interface StatAnswer {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly birthtimeNs: bigint;
  readonly directory: boolean;
}

/** A stat and whether the folder is empty, or why that could not be read. */
interface StatAndEmptyAnswer {
  readonly stat: StatAnswer;
  readonly empty: boolean | { readonly code?: string; readonly message: string };
}

interface LookAnswer {
  readonly id: number;
  readonly value?: StatAnswer | StatAndEmptyAnswer | string | boolean;
  readonly error?: { readonly code?: string; readonly message: string };
}

/** The error a look failed with, its code kept (ENOENT, EACCES, ...: set-roots.ts tells the hold by it). */
function errorOf(error: NonNullable<LookAnswer["error"]>): Error {
  return Object.assign(new Error(error.message), error.code !== undefined ? { code: error.code } : {});
}

/** A stat as the agent reads it. */
function statOf(value: StatAnswer): RootStat {
  return { dev: value.dev, ino: value.ino, birthtimeNs: value.birthtimeNs, isDirectory: () => value.directory };
}

/** What crosses the channel of a stat. */
function statAnswer(st: RootStat): StatAnswer {
  return { dev: st.dev, ino: st.ino, birthtimeNs: st.birthtimeNs, directory: st.isDirectory() };
}

/** An error as it crosses the channel, its code kept. */
function errorAnswer(error: unknown): { code?: string; message: string } {
  const code = (error as NodeJS.ErrnoException).code;
  return { message: String(error), ...(code !== undefined ? { code } : {}) };
}

/** The thread pool's size the child gets: one thread for each root that could hang, and the usual 4 at least. */
const MAX_THREADS = 1024;

/** A look asked and not answered yet. */
interface Waiting {
  readonly op: LookOp;
  readonly path: string;
  readonly again: boolean;
  resolve(value: LookAnswer["value"]): void;
  reject(error: unknown): void;
}

export class RootLookProcess implements RootLook {
  readonly #threads: number;
  #child: ChildProcess | undefined;
  #nextId = 1;
  #closed = false;
  readonly #waiting = new Map<number, Waiting>();

  /** `roots`: how many roots it may be asked about (each can hold one of its threads). */
  constructor(roots: number) {
    this.#threads = Math.min(MAX_THREADS, Math.max(4, roots + 1));
  }

  /**
   * Starts the process now rather than at the first look: its Node start then overlaps the caller's own work (run.ts
   * starts it while the agent's modules load).
   */
  start(): this {
    if (!this.#closed) this.#started();
    return this;
  }

  /** Whether it was made for at least `roots` roots (each can hold one of its threads). */
  fits(roots: number): boolean {
    return this.#threads >= Math.min(MAX_THREADS, Math.max(4, roots + 1));
  }

  async stat(root: string): Promise<RootStat> {
    const value = await this.#ask("stat", root);
    if (typeof value !== "object" || "stat" in value) throw new RootLookError(`the root look process answered a stat of ${root} with ${String(value)}`);
    return statOf(value);
  }

  async statAndEmpty(root: string): Promise<StatAndEmpty> {
    const value = await this.#ask("statAndEmpty", root);
    if (typeof value !== "object" || !("stat" in value)) throw new RootLookError(`the root look process answered a stat of ${root} with ${String(value)}`);
    return { stat: statOf(value.stat), empty: emptinessOf(typeof value.empty === "boolean" ? value.empty : errorOf(value.empty)) };
  }

  async realpath(root: string): Promise<string> {
    const value = await this.#ask("realpath", root);
    if (typeof value !== "string") throw new RootLookError(`the root look process answered a realpath of ${root} with ${String(value)}`);
    return value;
  }

  isEmpty(root: string): Promise<boolean> {
    return this.#flag("isEmpty", root);
  }

  exists(path: string): Promise<boolean> {
    return this.#flag("exists", path);
  }

  /** The agent stops: the child is killed (a thread of it stuck on a hung root with it), and no look waits any longer. */
  close(): void {
    this.#closed = true;
    this.#child?.kill("SIGKILL");
    this.#child = undefined;
    this.#failAll(new RootLookError("the agent stopped"));
  }

  async #flag(op: "isEmpty" | "exists", path: string): Promise<boolean> {
    const value = await this.#ask(op, path);
    if (typeof value !== "boolean") throw new RootLookError(`the root look process answered ${op} of ${path} with ${String(value)}`);
    return value;
  }

  /** `again`: asked before of a process that ended with it outstanding (killed, out of memory): not asked a third time. */
  #ask(op: LookOp, path: string, again = false): Promise<LookAnswer["value"]> {
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(new RootLookError("the agent stopped"));
        return;
      }
      const id = this.#nextId++;
      this.#waiting.set(id, { op, path, again, resolve, reject });
      try {
        const child = this.#started();
        // Keeps the process alive only while a look waits (the agent's close kills the child, hung or not).
        if (this.#waiting.size === 1) this.#hold(child, true);
        const request: LookRequest = { id, op, path };
        child.send(request);
      } catch (error) {
        this.#settled(id);
        // Not the file system's error (a fork's EAGAIN is no answer about the root).
        reject(new RootLookError(`the root look process could not be asked: ${String(error)}`));
      }
    });
  }

  #started(): ChildProcess {
    if (this.#child) return this.#child;
    const cache = module.getCompileCacheDir();
    const child = fork(fileURLToPath(import.meta.url), [CHILD_ARG], {
      execArgv: [],
      serialization: "advanced",
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      // The compile cache the agent turned on (a child does not inherit it): see folderWorkerOptions.
      env: { ...process.env, UV_THREADPOOL_SIZE: String(this.#threads), ...(cache ? { NODE_COMPILE_CACHE: cache } : {}) },
    });
    child.on("message", (answer: LookAnswer) => this.#answered(answer));
    const gone = (why: string) => {
      if (this.#child !== child) return;
      this.#child = undefined;
      // What it had not answered is asked once of a new one (a process killed once holds no set); a second end fails
      // it, and the next look starts another process.
      const waiting = [...this.#waiting.values()];
      this.#waiting.clear();
      const error = new RootLookError(`the root look process ${why}`);
      for (const { op, path, again, resolve, reject } of waiting) {
        if (again || this.#closed) reject(error);
        else this.#ask(op, path, true).then(resolve, reject);
      }
    };
    child.on("error", (error) => gone(`failed: ${error.message}`));
    child.on("exit", (code, signal) => gone(`ended (${signal ?? `exit code ${String(code)}`})`));
    this.#hold(child, false);
    this.#child = child;
    return child;
  }

  /** Whether the child keeps this process alive: only while a look waits. */
  #hold(child: ChildProcess, hold: boolean): void {
    if (hold) {
      child.ref();
      child.channel?.ref();
    } else {
      child.unref();
      child.channel?.unref();
    }
  }

  #settled(id: number): void {
    this.#waiting.delete(id);
    if (this.#waiting.size === 0 && this.#child) this.#hold(this.#child, false);
  }

  #answered(answer: LookAnswer): void {
    const waiting = this.#waiting.get(answer.id);
    if (!waiting) return;
    this.#settled(answer.id);
    if (answer.error) waiting.reject(errorOf(answer.error));
    else waiting.resolve(answer.value);
  }

  #failAll(error: Error): void {
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const { reject } of waiting) reject(error);
  }
}

/** In the child: one look, answered. */
async function answer(request: LookRequest): Promise<LookAnswer> {
  try {
    switch (request.op) {
      case "stat":
        return { id: request.id, value: statAnswer(await lookHere.stat(request.path)) };
      case "statAndEmpty": {
        const st = await lookHere.stat(request.path);
        const empty = st.isDirectory() ? await lookHere.isEmpty(request.path).catch((error: unknown) => errorAnswer(error)) : { code: "ENOTDIR", message: `ENOTDIR: not a directory, ${request.path}` };
        return { id: request.id, value: { stat: statAnswer(st), empty } };
      }
      case "realpath":
        return { id: request.id, value: await lookHere.realpath(request.path) };
      case "isEmpty":
        return { id: request.id, value: await lookHere.isEmpty(request.path) };
      case "exists":
        return { id: request.id, value: await lookHere.exists(request.path).catch(() => false) };
    }
  } catch (error) {
    return { id: request.id, error: errorAnswer(error) };
  }
}

if (process.argv[2] === CHILD_ARG && process.send) {
  const send = process.send.bind(process);
  process.on("message", (request: LookRequest) => {
    void answer(request).then((answered) => send(answered));
  });
  // The agent is gone (killed without closing this): so is this process, at once, also with a thread stuck on a hung
  // root (an exit would wait for it).
  process.on("disconnect", () => process.kill(process.pid, "SIGKILL"));
  // Killed, never exiting, it would never write its compile cache: without it every start strips this module's types
  // again, loading Node's TypeScript compiler (~30 MB more for as long as the child lives).
  module.flushCompileCache();
}
