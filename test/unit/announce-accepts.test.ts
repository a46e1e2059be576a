// The applier's announcement of what it reads goes beside a status write, never
// in its way: a store refusing the announcement leaves the status written (with
// the same words) and a warning, and the next status write announces again.

import { expect, it } from "vitest";
import { APPLIER_ANNOUNCEMENT_KEY } from "../../contract/applier-accepts.ts";
import { initialStatus } from "../../contract/layout.ts";
import { AcceptsAnnouncer } from "../../lambdas/applier/announce-accepts.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { WriteResult } from "../../lambdas/store/store.ts";

class RefusingOnce extends MemoryStore {
  refusals = 1;
  override put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    if (key === APPLIER_ANNOUNCEMENT_KEY && this.refusals-- > 0) return Promise.reject(new Error("AccessDenied"));
    return super.put(key, body, meta);
  }
}

it("stamps the status and logs, without failing, when the announcement cannot be written; the next stamp announces", async () => {
  const store = new RefusingOnce();
  const lines: string[] = [];
  const announcer = new AcceptsAnnouncer(store);
  const status = initialStatus("docs");
  await announcer.stamp(status, new Date(0), (line) => lines.push(line));
  expect(status.accepts).toContain("whole-packs");
  expect(await store.get(APPLIER_ANNOUNCEMENT_KEY)).toBeUndefined();
  expect(lines.join("\n")).toMatch(/could not write the applier's announcement.*AccessDenied/);
  await announcer.stamp(initialStatus("docs"), new Date(1000), (line) => lines.push(line));
  expect(JSON.parse((await store.get(APPLIER_ANNOUNCEMENT_KEY))?.body.toString() ?? "{}")).toMatchObject({ accepts: ["whole-packs"] });
});
