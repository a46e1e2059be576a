// A task marker the target refuses for good is named in status as `task <id>` with its remedy (a new marker), and
// the entry clears once a later marker of the set is sent: the set's markers work again.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { DeliveryRefusedError } from "../../agent/transport/transport.ts";
import { readTaskResult } from "../../lambdas/target/readers.ts";
import { agentHarness } from "../support/harness.ts";

const SET = "app";

it("clears a refused marker's skipped entry once a later marker of the set is sent", async () => {
  const h = agentHarness(SET);
  try {
    writeFileSync(join(h.src.path, "a.txt"), "a");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const bad = await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
    const send = h.transport.send.bind(h.transport);
    h.transport.send = async (set, id, body, attributes) => {
      if (body.includes(bad.id)) throw new DeliveryRefusedError("refused for good (test)");
      return send(set, id, body, attributes);
    };
    await h.agent.drain(SET);
    const skipped = h.journal.skipped(SET);
    expect(skipped.map((s) => s.path)).toEqual([`task ${bad.id}`]);
    expect(skipped[0]?.reason).toContain(`insert a new marker: \`tidemark task ${SET}\``);

    // A later file change alone does not clear it: the task still did not run.
    writeFileSync(join(h.src.path, "b.txt"), "b");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(h.journal.skipped(SET).map((s) => s.path)).toEqual([`task ${bad.id}`]);

    const good = await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
    await h.agent.drain(SET);
    expect((await readTaskResult(h.store, SET, good.id))?.status).toBe("succeeded");
    expect(h.journal.skipped(SET)).toEqual([]);
  } finally {
    await h.close();
  }
}, 120_000);

it("keeps a skipped file's entry when a marker is sent: only a later change of the file clears it", async () => {
  const h = agentHarness(SET);
  try {
    h.journal.markSkipped(SET, "notes.txt", 0, "refused (test)");
    const marker = await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
    await h.agent.drain(SET);
    expect((await readTaskResult(h.store, SET, marker.id))?.status).toBe("succeeded");
    expect(h.journal.skipped(SET).map((s) => s.path)).toEqual(["notes.txt"]);
  } finally {
    await h.close();
  }
}, 120_000);
