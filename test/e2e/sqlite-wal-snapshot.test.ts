// A SQLite database in WAL mode, open and idle (its newest pages only in the
// -wal file, never checkpointed), snapshotted at a marker: the snapshot
// restored from the CLI opens, passes `PRAGMA integrity_check` and holds
// every row committed before the marker, none committed after; `restore --at`
// of the marker's moment does the same, after the application went on.

import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir, type TreePicture } from "../support/tree.ts";

const SET = "sqlite";
const work = tempDir();
const src = join(work.path, "src");
let cloud: TestCloud;
let agent: RunningAgent | undefined;
let config: string;
let db: DatabaseSync | undefined;

function insertRows(from: number, count: number): void {
  const insert = db?.prepare("INSERT INTO rows (id, body) VALUES (?, ?)");
  db?.exec("BEGIN");
  for (let id = from; id < from + count; id++) insert?.run(id, randomBytes(700));
  db?.exec("COMMIT");
}

/** What a restored copy of the database says of itself. */
function inspect(file: string): { integrity: string; rows: number; maxId: number } {
  const copy = new DatabaseSync(file);
  try {
    const integrity = String(copy.prepare("PRAGMA integrity_check").get()?.integrity_check);
    const counted = copy.prepare("SELECT count(*) AS n, max(id) AS top FROM rows").get();
    return { integrity, rows: Number(counted?.n), maxId: Number(counted?.top) };
  } finally {
    copy.close();
  }
}

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(src);
  db = new DatabaseSync(join(src, "app.db"));
  db.exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)");
  insertRows(0, 3000);
  config = cloud.writeConfig(work.path, [{ name: SET, path: "src" }]);
  agent = await startAgent(loadConfig(config), silentLogger);
});

afterAll(async () => {
  db?.close();
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

it("a WAL database snapshotted at a marker restores intact, with exactly the rows committed before it", async () => {
  insertRows(3000, 500);
  const task = await tidemark(["task", SET, "--label", "sqlite", "--wait", "--json", "--config", config]);
  expect(task.stderr).toBe("");
  expect(task.code).toBe(0);
  const outcome = JSON.parse(task.stdout) as { result: TaskResult };
  const markedAt = Date.now();
  // The application goes on after the marker: none of this belongs to the snapshot.
  insertRows(3500, 800);
  db?.exec("DELETE FROM rows WHERE id < 100");

  const to = join(work.path, "restored");
  const restore = await tidemark(["restore", SET, "--snapshot", String(outcome.result.outputs.snapshotId), "--to", to, "--config", config]);
  expect(restore.code).toBe(0);
  expect(inspect(join(to, "app.db"))).toEqual({ integrity: "ok", rows: 3500, maxId: 3499 });

  // Once the later writes reached the target, the marker's moment restores from the history as the snapshot did.
  // (-shm is left out: SQLite writes it through mmap, which need not change its mtime, and rebuilds it on open.)
  const withoutShm = (picture: TreePicture) => Object.fromEntries(Object.entries(picture).filter(([path]) => !path.endsWith("-shm")));
  await eventually(async () => expect(withoutShm(await pictureOfTarget(cloud.store, SET))).toEqual(withoutShm(await pictureOfSource(src))));
  const at = join(work.path, "at-marker");
  const atMarker = await tidemark(["restore", SET, "--at", new Date(markedAt).toISOString(), "--to", at, "--config", config]);
  expect(atMarker.code).toBe(0);
  expect(inspect(join(at, "app.db"))).toEqual({ integrity: "ok", rows: 3500, maxId: 3499 });
});
