// The steady-load writer, in a process of its own (as an application on the
// source host would be): writes the given files at the given rate and
// records when each write happened (epoch ms) into a JSON file.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [tree, pathsFile, rate, out] = process.argv.slice(2);
if (!tree || !pathsFile || !rate || !out) throw new Error("usage: writer.ts TREE PATHS.json RATE OUT.json");
const paths = JSON.parse(readFileSync(pathsFile, "utf8")) as string[];
const writtenAt: Record<string, number> = {};
const started = Date.now();
for (const [k, path] of paths.entries()) {
  const wait = started + (k * 1000) / Number(rate) - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  writtenAt[path] = Date.now();
  writeFileSync(join(tree, path), `changed ${k}\n`);
}
writeFileSync(out, JSON.stringify(writtenAt));
