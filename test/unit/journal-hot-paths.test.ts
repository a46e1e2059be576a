// The journal's per-send and per-capture work: forgetting old send times goes
// by an index (added to a journal made before it when it is next opened), and
// a captured file costs no query of the skipped names when its set lists no
// unreadable entry.

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { SkippedNames } from "../../agent/skipped-names.ts";
import { tempDir } from "../support/tree.ts";

const HOUR = 3_600_000;

it("forgets send times older than two hours by the sends_by_time index, which a journal made without it gains when opened", () => {
  const dir = tempDir();
  try {
    let clock = 10 * HOUR;
    const first = Journal.open(dir.path, { now: () => clock });
    first.sets.nextSeq("s");
    first.sets.sent("s", 1, 100, 1, 10);
    first.close();
    // A journal from before the index.
    const old = new DatabaseSync(join(dir.path, "journal.db"));
    old.exec("DROP INDEX sends_by_time");
    old.close();

    const journal = Journal.open(dir.path, { now: () => clock });
    clock += 2 * HOUR + 1;
    journal.sets.sent("s", 2, 100, 1, 10);
    expect(journal.sets.firstSendAfter("s", 0)).toEqual({ seq: 2, at: clock });
    journal.close();

    const db = new DatabaseSync(join(dir.path, "journal.db"));
    const plan = db.prepare("EXPLAIN QUERY PLAN DELETE FROM sends WHERE set_name = ? AND at < ?").all("s", 0);
    db.close();
    expect(plan.map((row) => String(row.detail)).join("\n")).toMatch(/USING (COVERING )?INDEX sends_by_time/);
  } finally {
    dir.remove();
  }
});

/** db, with the number of times its prepared statements ran (get, all, run) counted in `calls`. */
function counted(db: DatabaseSync): { db: DatabaseSync; calls: { n: number } } {
  const calls = { n: 0 };
  const statement = (prepared: StatementSync): StatementSync =>
    new Proxy(prepared, {
      get(target, name) {
        const value: unknown = Reflect.get(target, name);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (name === "get" || name === "all" || name === "run") calls.n++;
          return Reflect.apply(value, target, args);
        };
      },
    });
  const wrapped = new Proxy(db, {
    get(target, name) {
      if (name === "prepare") return (sql: string) => statement(target.prepare(sql));
      const value: unknown = Reflect.get(target, name);
      return typeof value === "function" ? (...args: unknown[]) => Reflect.apply(value, target, args) : value;
    },
  });
  return { db: wrapped, calls };
}

it("asks nothing per captured file of a set that lists no unreadable entry, and still drops one that is listed once it is captured", () => {
  const { db, calls } = counted(new DatabaseSync(":memory:"));
  const names = new SkippedNames(db);
  names.record("s", "", [{ path: "bad\nname", reason: "name has a newline" }], true);

  calls.n = 0;
  for (let i = 0; i < 1000; i++) names.captured("s", `f${i}`);
  // One look at the set, then none: a name problem is not dropped by a capture.
  expect(calls.n).toBe(1);
  names.captured("s", "bad\nname");
  expect(names.list("s").map((entry) => entry.path)).toEqual(["bad\nname"]);

  names.record("s", "locked", [{ path: "locked/f", reason: "cannot be read: EACCES: permission denied" }], false);
  names.captured("s", "other");
  names.captured("s", "locked/f");
  expect(names.list("s").map((entry) => entry.path)).toEqual(["bad\nname"]);
  calls.n = 0;
  for (let i = 0; i < 1000; i++) names.captured("s", `f${i}`);
  expect(calls.n).toBe(1);
  // Another set is looked at on its own.
  names.record("t", "", [{ path: "x", reason: "cannot be read: EPERM" }], true);
  names.captured("t", "x");
  expect(names.list("t")).toEqual([]);
});
