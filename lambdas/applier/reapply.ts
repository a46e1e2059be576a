// Applying a message again from its checkpoint (the invocation died after
// applying records, before the segment or status that counts them). Most
// records give the same result twice; two do not once a later record of the
// same message changed what they look at:
// - a rename, whose source a later record re-created or whose target it
//   replaced, moved or deleted (renames.ts recognises only its own copy);
// - a delta, whose file a later record changed again (its base is gone).
// A rename is made safe by moving the checkpoint past it before any later
// record of the message touches one of its paths (a segment, or the status
// without history; rare: a rename's paths are seldom written again in the
// same message). A delta followed by a later delta or put of its file (a busy
// file's versions, common) costs nothing up front: applied again, a delta
// whose file was written by it, or by a later put of its file in the message,
// and holds what that record gives it (the object's stamp and SHA-256,
// write-stamps.ts) was applied before, and that later put makes the file
// exact. A file written before stamps carries none: the delta counts as
// applied before when the file holds the content a later put of the message
// gives it (which a stale target can hold without the delta ever applied).

import { META } from "../../contract/layout.ts";
import type { PutRecord, WireRecord } from "../../contract/wire.ts";
import type { TargetStore } from "../store/store.ts";
import { judgeStamp } from "./write-stamps.ts";

/** The set's paths a record reads or changes; "all" for one that looks at the whole set. */
function touched(record: WireRecord): readonly string[] | "all" {
  switch (record.op) {
    case "put":
    case "symlink":
    case "delete":
    case "mkdir":
      return [record.path];
    case "rename":
      return [record.from, record.to];
    case "verify":
    case "resync":
      return "all";
    default:
      return [];
  }
}

export class ReapplyGuard {
  /** Paths of renames applied since the checkpoint last moved: no later record may touch them first. */
  readonly #renamed = new Set<string>();
  /** Files of deltas applied since then: later puts of them are judged on the way (supersededDelta), anything else waits. */
  readonly #deltas = new Set<string>();
  /** For each delta's seq: the later puts of its file in the message, seq -> the SHA-256 each gives it. */
  readonly #laterPuts = new Map<number, Map<number, string>>();

  constructor(records: readonly WireRecord[]) {
    const deltas: { path: string; later: Map<number, string> }[] = [];
    for (const record of records) {
      if (record.op !== "put") continue;
      for (const delta of deltas) if (delta.path === record.path) delta.later.set(record.seq, record.sha256);
      if (record.delta) {
        const later = new Map<number, string>();
        deltas.push({ path: record.path, later });
        this.#laterPuts.set(record.seq, later);
      }
    }
  }

  /** True when the checkpoint must cover the records applied so far before `step` is applied. */
  before(step: readonly WireRecord[]): boolean {
    if (this.#renamed.size === 0 && this.#deltas.size === 0) return false;
    return step.some((record) => {
      const paths = touched(record);
      if (paths === "all") return true;
      return paths.some((path) => this.#renamed.has(path) || (record.op !== "put" && this.#deltas.has(path)));
    });
  }

  /** A record reached the store. */
  applied(record: WireRecord): void {
    if (record.op === "rename") {
      this.#renamed.add(record.from);
      this.#renamed.add(record.to);
    } else if (record.op === "put" && record.delta) this.#deltas.add(record.path);
  }

  /** The checkpoint now covers every record applied. */
  covered(): void {
    this.#renamed.clear();
    this.#deltas.clear();
  }

  /**
   * For a delta whose base the object at key no longer is: true when this
   * delta was applied before (a later record of the message changed the file
   * since, and makes it exact again). The object's stamp decides: written by
   * this record of `generation` and holding its result, or by a later put of
   * the file in this message and holding what that put gives it. An object
   * without a stamp (written before stamps) counts when it holds what a later
   * put of the message gives the file.
   */
  async supersededDelta(store: TargetStore, key: string, record: PutRecord, generation: string | undefined): Promise<boolean> {
    const head = await store.head(key);
    if (!head) return false;
    const later = this.#laterPuts.get(record.seq) ?? new Map<number, string>();
    const stamp = judgeStamp(head.meta, generation, record, later);
    if (stamp !== "unstamped") return stamp === "applied";
    const sha256 = head.meta[META.sha256];
    return sha256 !== undefined && [...later.values()].includes(sha256);
  }
}
