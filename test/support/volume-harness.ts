// A volume set replicated by an agent into an in-memory target: a disk image
// in a temp folder, the journal beside it, markers stepped by hand.

import type { HistorySettings } from "../../lambdas/history/recorder.ts";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, type AgentOptions } from "../../agent/agent.ts";
import { Journal } from "../../agent/journal.ts";
import type { SetSpec } from "../../agent/set-spec.ts";
import { readTaskResult } from "../../lambdas/target/index.ts";
import { DEFAULT_TASK_TIMEOUT_SECONDS } from "../../contract/tasks.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import type { TaskSettings } from "../../lambdas/applier/markers.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { MemoryTransport } from "./memory-transport.ts";
import { tempDir } from "./tree.ts";

export const VOLUME_SET = "disk";

/** True where this process may attach loop devices (root, with losetup): block device tests run only there. */
export function canUseLoopDevices(): boolean {
  try {
    if (process.getuid?.() !== 0) return false;
    execFileSync("losetup", ["--find"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const SET = VOLUME_SET;

export interface VolumeHarness {
  readonly image: string;
  readonly spec: SetSpec;
  readonly store: MemoryStore;
  readonly transport: MemoryTransport;
  readonly journal: Journal;
  readonly agent: Agent;
  readonly dir: ReturnType<typeof tempDir>;
  /** Inserts a marker, sends everything, and returns the task's result. */
  marker(action?: "snapshot" | "ebs-snapshot", label?: string): Promise<{ id: string; status: string; outputs: Record<string, unknown> }>;
  close(): Promise<void>;
}

export function volumeHarness(
  image: Buffer,
  tasks?: TaskSettings,
  store = new MemoryStore(),
  options: { monitorEnabled?: boolean; scanMs?: number; watchVolume?: AgentOptions["watchVolume"]; loopDevice?: boolean; history?: HistorySettings; now?: () => number } = {},
): VolumeHarness {
  const dir = tempDir("tidemark-volume-");
  const file = join(dir.path, "disk.img");
  writeFileSync(file, image);
  // The set reads a loop device over the image: a real block device, whose size only sysfs tells.
  const path = options.loopDevice ? execFileSync("losetup", ["--find", "--show", file], { encoding: "utf8" }).trim() : file;
  const spec: SetSpec = { name: SET, root: path, exclude: [], volume: { scanMs: options.scanMs ?? 60_000 } };
  const transport = new MemoryTransport(new Applier({ store, log: () => {}, ...(tasks ? { tasks } : {}), ...(options.history ? { history: options.history } : {}), ...(options.now ? { now: () => new Date(options.now?.() ?? 0) } : {}) }), store);
  const journal = Journal.open(join(dir.path, "state"), options.now ? { now: options.now } : {});
  const agent = new Agent({ sets: [spec], journal, transport, monitorEnabled: options.monitorEnabled ?? false, ...(options.watchVolume ? { watchVolume: options.watchVolume } : {}) });
  return {
    image: path,
    spec,
    store,
    transport,
    journal,
    agent,
    dir,
    async marker(action = "snapshot", label) {
      const queued = await agent.insertMarker(SET, { fields: { action, timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS, ...(label ? { label } : {}) } });
      await agent.drain(SET);
      const result = await readTaskResult(store, SET, queued.id);
      if (!result) throw new Error(`no result for task ${queued.id}`);
      return { id: queued.id, status: result.status, outputs: result.outputs };
    },
    async close() {
      await agent.stop();
      journal.close();
      if (options.loopDevice) execFileSync("losetup", ["--detach", path]);
      dir.remove();
    },
  };
}

