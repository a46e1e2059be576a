// One set replicated by an agent into an in-memory target, with temp folders
// for the source and the state: the setup most agent tests share.

import { Agent, type AgentOptions } from "../../agent/agent.ts";
import { Journal, type JournalOptions } from "../../agent/journal.ts";
import type { OperationDeps } from "../../agent/operations.ts";
import { pruneReportKey, VerifyReportSchema, verifyReportKey } from "../../contract/layout.ts";
import { PruneReportSchema } from "../../contract/tasks.ts";
import type { TaskSettings } from "../../lambdas/applier/markers.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import type { HistorySettings } from "../../lambdas/history/recorder.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryTransport } from "./memory-transport.ts";
import { tempDir } from "./tree.ts";

export interface Harness {
  readonly set: string;
  readonly src: ReturnType<typeof tempDir>;
  readonly state: ReturnType<typeof tempDir>;
  readonly store: MemoryStore;
  readonly transport: MemoryTransport;
  journal: Journal;
  agent: Agent;
  /** Bytes the set sent so far (messages and staged content). */
  sent(): number;
  /** A new agent on the same journal and target (after `agent.stop()`), as after a restart. */
  restart(options?: Partial<AgentOptions>, journalOptions?: JournalOptions): void;
  /** Stops the agent and closes the journal, as when the process exits: the state folder may then be changed by hand before `restart`. */
  shutdown(): Promise<void>;
  /** What verify and mirror need, reading reports straight from the memory store (draining first: nothing sends in the background). */
  operations(): OperationDeps;
  close(): Promise<void>;
}

export function agentHarness(
  set: string,
  options: Partial<AgentOptions> = {},
  target: { tasks?: TaskSettings; store?: MemoryStore; history?: HistorySettings; now?: () => number; log?: (line: string) => void; journal?: JournalOptions } = {},
): Harness {
  const src = tempDir("tidemark-src-");
  const state = tempDir("tidemark-state-");
  const store = target.store ?? new MemoryStore();
  // One clock (when given) for the agent's journal and the applier: what `restore --at` goes by.
  const clock = target.now;
  const applierNow = clock ? { now: () => new Date(clock()) } : {};
  // The journal's options (a test's stand-ins), kept across restarts.
  const journalNow = { ...target.journal, ...(clock ? { now: clock } : {}) };
  const transport = new MemoryTransport(
    new Applier({ store, log: target.log ?? (() => {}), ...(target.tasks ? { tasks: target.tasks } : {}), ...(target.history ? { history: target.history } : {}), ...applierNow }),
    store,
  );
  const make = (journal: Journal, extra: Partial<AgentOptions>) =>
    new Agent({ sets: [{ name: set, root: src.path, exclude: [] }], journal, transport, monitorEnabled: false, ...options, ...extra });
  const journal = Journal.open(state.path, journalNow);
  let journalOpen = true;
  const harness: Harness = {
    set,
    src,
    state,
    store,
    transport,
    journal,
    agent: make(journal, {}),
    sent: () => harness.journal.sets.counters(set).bytesSent,
    restart(extra = {}, journalOptions = {}) {
      if (journalOpen) harness.journal.close();
      harness.journal = Journal.open(state.path, { ...journalNow, ...journalOptions });
      journalOpen = true;
      harness.agent = make(harness.journal, extra);
    },
    operations: () => ({
      agent: harness.agent,
      readReport: async (s, id) => {
        await harness.agent.drain(s);
        const object = await store.get(verifyReportKey(s, id));
        return object && VerifyReportSchema.parse(JSON.parse(object.body.toString()));
      },
      readPruneReport: async (s, id) => {
        await harness.agent.drain(s);
        const object = await store.get(pruneReportKey(s, id));
        return object && PruneReportSchema.parse(JSON.parse(object.body.toString()));
      },
      targetStatus: (s) => readSetStatus(store, s),
      pollMs: 1,
      timeoutMs: 5_000,
    }),
    async shutdown() {
      await harness.agent.stop();
      harness.journal.close();
      journalOpen = false;
    },
    async close() {
      await harness.agent.stop();
      if (journalOpen) harness.journal.close();
      src.remove();
      state.remove();
    },
  };
  return harness;
}
