// A busy application for the marker tests: it writes continuously across
// many files until killed. Some writes depend on earlier writes to other
// files (a ledger that records the counter file's content), and the mix holds
// appends, overwrites, truncations, renames, deletes, new folders and links.
// Run: node test/support/workload.ts ROOT SEED

import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { seededRandom } from "./seeded-random.ts";

const root = process.argv[2] ?? "";
const seedText = process.argv[3] ?? "";
if (root === "" || seedText === "") throw new Error("usage: workload.ts ROOT SEED");

const random = seededRandom(Number(seedText));

const DIRS = ["a", "b", "b/c", "d"];
for (const dir of DIRS) mkdirSync(join(root, dir), { recursive: true });
const files = (): string[] => DIRS.flatMap((dir) => readdirSync(join(root, dir), { withFileTypes: true }).filter((e) => e.isFile()).map((e) => `${dir}/${e.name}`));
const pick = <T>(items: T[]): T | undefined => items[random(items.length)];
const line = (n: number) => `${n} ${"x".repeat(random(200))}\n`;
let step = 0;
// Names made by this run carry its seed: runs with other seeds on the same tree never collide.
const name = (kind: string) => `${kind}${seedText}-${step}`;

function operate(): void {
  step += 1;
  const existing = files();
  const target = pick(existing);
  switch (random(10)) {
    case 0:
    case 1: {
      // Dependent writes: the ledger records what the counter holds, then the counter moves on.
      const counter = join(root, "counter");
      const value = existsSync(counter) ? readFileSync(counter, "utf8") : "0";
      appendFileSync(join(root, "a/ledger"), `${step} ${createHash("sha256").update(value).digest("hex")}\n`);
      writeFileSync(counter, String(Number(value) + 1));
      break;
    }
    case 2:
      if (target) appendFileSync(join(root, target), line(step));
      break;
    case 3:
      writeFileSync(join(root, pick(DIRS) ?? "a", `f${random(40)}.txt`), line(step).repeat(1 + random(50)));
      break;
    case 4:
      if (target) truncateSync(join(root, target), random(100));
      break;
    case 5:
      if (target) renameSync(join(root, target), join(root, pick(DIRS) ?? "a", `${name("r")}.txt`));
      break;
    case 6:
      if (target && existing.length > 10) rmSync(join(root, target));
      break;
    case 7:
      if (random(20) === 0) mkdirSync(join(root, pick(DIRS) ?? "a", name("dir")));
      else if (target) writeFileSync(join(root, target), line(step));
      break;
    case 8:
      if (random(10) === 0) symlinkSync(target ?? "nowhere", join(root, "d", name("link")));
      break;
    default:
      writeFileSync(join(root, "b/c/state.json"), JSON.stringify({ step, files: existing.length }));
  }
}

// Bursts of writes with short pauses, until killed.
setInterval(() => {
  for (let i = 0; i < 20; i++) operate();
}, 5);
