// `tidemark status` names a rejected message the set's health no longer counts, with its error: that error quotes a
// path from the source host, so a hostile name (a U+202E, a C1 control, a newline) is printed escaped, not obeyed.

import { describe, expect, it } from "vitest";
import { oldRejectedLine } from "../../agent/commands/status.ts";

describe("the line of a rejected message no longer counted", () => {
  it("escapes the controls of the path its error quotes", () => {
    const error = 'invalid message: records.0.mtimeNs (path "evil\u202etxt.exe\u009b2J\nfake line"): mtimeNs must be';
    const line = oldRejectedLine({ messageId: "m1", at: "2026-12-01T05:00:00.000Z", error });
    expect(line).toBe(
      'last rejected message m1 at 2026-12-01T05:00:00.000Z (no longer counted: older than 24 hours, or a resync applied since superseded its records): invalid message: records.0.mtimeNs (path "evil\\u202etxt.exe\\x9b2J\\nfake line"): mtimeNs must be',
    );
    expect([...line].filter((c) => c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f) || c === "\u202e")).toEqual([]);
  });
});
