// The bucket layout's per-set prefixes (contract/layout.ts): every key of a
// set lies under its prefix, and no other set's key does, so a listing by the
// prefix (snapshot pruning, snapshot verification, the history's preserved
// listing) sees that set's objects and only them.

import { expect, it } from "vitest";
import { preservedKey, preservedPrefix } from "../../contract/layout.ts";

const SHA = "a".repeat(64);

it("keeps a set's preserved content under its preserved prefix, and another set's (even one whose name it begins) outside it", () => {
  expect(preservedPrefix("db")).toBe("preserved/db/");
  expect(preservedKey("db", SHA)).toBe(`${preservedPrefix("db")}${SHA}`);
  expect(preservedKey("db2", SHA).startsWith(preservedPrefix("db"))).toBe(false);
  expect(preservedKey("db", SHA).slice(preservedPrefix("db").length)).toBe(SHA);
});
