// A micro-benchmark of the journal's per-send and per-capture statements
// (not a scenario of bench/run.ts): `node bench/journal-hot-paths.ts [SENDS]`.
//   send:     Journal.markSent() (one transaction) with SENDS send times of the set within the
//             two hours kept (a busy set sends every ~10 ms: 720,000 rows),
//             with the sends_by_time index and with it dropped (as before it).
//   captured: SkippedNames.captured() of a file of a set that lists no
//             unreadable entry (no query), and of one that lists one (a query
//             per call, as every call made before).
// Rounds alternate the two sides in one process; it prints µs per call.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Journal } from "../agent/journal.ts";

const sends = Number(process.argv[2] ?? 200_000);
const CALLS = 2_000;
const ROUNDS = 3;
const dir = mkdtempSync(join(tmpdir(), "tidemark-journal-bench-"));

function perCall(calls: number, work: (i: number) => void): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) work(i);
  return Number(process.hrtime.bigint() - start) / 1000 / calls;
}

try {
  let clock = 0;
  const journal = Journal.open(dir, { now: () => clock });
  journal.sets.nextSeq("s");
  const db = new DatabaseSync(join(dir, "journal.db"));
  db.exec("BEGIN");
  const insert = db.prepare("INSERT INTO sends (set_name, seq, at) VALUES ('s', ?, ?)");
  // SENDS rows spread over the last 100 minutes: none old enough to forget.
  for (let seq = 1; seq <= sends; seq++) insert.run(seq, Math.floor((seq * 100 * 60_000) / sends));
  db.exec("COMMIT");
  clock = 100 * 60_000;
  let seq = sends;
  const send = () => journal.markSent("s", ++seq, 100);

  journal.skippedNames.record("clean", "", [], true);
  journal.skippedNames.record("locked", "", [{ path: "x", reason: "cannot be read: EACCES" }], true);

  const rows: string[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const indexed = perCall(CALLS, send);
    db.exec("DROP INDEX sends_by_time");
    const scanned = perCall(CALLS, send);
    db.exec("CREATE INDEX sends_by_time ON sends (set_name, at)");
    const noQuery = perCall(CALLS * 10, (i) => journal.skippedNames.captured("clean", `f${i}`));
    const query = perCall(CALLS * 10, (i) => journal.skippedNames.captured("locked", `f${i}`));
    rows.push(`round ${round}: markSent() ${indexed.toFixed(1)} µs indexed vs ${scanned.toFixed(1)} µs without the index; captured() ${noQuery.toFixed(2)} µs (no unreadable entry) vs ${query.toFixed(2)} µs (a query)`);
  }
  db.close();
  journal.close();
  console.log(`${sends} send times of the set kept, ${CALLS} sends a round`);
  for (const row of rows) console.log(row);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
