// The agent's problem with its state folder (a full disk), for `tidemark
// status`. When the disk is full the journal cannot record it, so it lives in
// a small file allocated when the agent starts and rewritten in place: bytes
// already on disk need no new space.

import { closeSync, fstatSync, fsyncSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";

const FILE_NAME = "agent-problem.json";
const FILE_BYTES = 4096;

const ProblemSchema = z.object({ problem: z.string().nullable(), since: z.string().nullable() });

export interface AgentProblem {
  readonly problem: string;
  /** When the problem began (ISO 8601). */
  readonly since: string;
}

export class ProblemFile {
  readonly #fd: number;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Opens (allocating if needed) the file in stateDir and clears any problem a previous run left. */
  static open(stateDir: string): ProblemFile {
    const fd = openSync(join(stateDir, FILE_NAME), "a+");
    closeSync(fd);
    const file = new ProblemFile(openSync(join(stateDir, FILE_NAME), "r+"));
    file.write(null);
    return file;
  }

  /** Records the problem (null: none), padded to the file's allocated size so nothing new is allocated. */
  write(problem: AgentProblem | null): void {
    const json = (text: string | null, since: string | null) => JSON.stringify({ problem: text, since });
    let body = problem ? json(problem.problem, problem.since) : json(null, null);
    // Cut the message, never the JSON, when it is longer than the file.
    if (problem && Buffer.byteLength(body) >= FILE_BYTES) body = json(`${problem.problem.slice(0, FILE_BYTES / 2)}...`, problem.since);
    const bytes = Buffer.alloc(Math.max(FILE_BYTES, fstatSync(this.#fd).size), " ");
    bytes.write(body, 0, "utf8");
    writeSync(this.#fd, bytes, 0, bytes.length, 0);
    fsyncSync(this.#fd);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** The problem the agent on stateDir recorded, or null (no file: no agent ran there yet). */
export function readProblem(stateDir: string): AgentProblem | null {
  let text: string;
  try {
    text = readFileSync(join(stateDir, FILE_NAME), "utf8").trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
  if (text === "") return null;
  const parsed = ProblemSchema.parse(JSON.parse(text));
  return parsed.problem === null ? null : { problem: parsed.problem, since: parsed.since ?? "" };
}
