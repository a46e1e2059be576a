// The database writer of the db and append scenarios, in a process of its
// own (as an application on the source host would be):
//   pages FILE RATE SECONDS OUT   random 4 KiB pages at page-aligned offsets, each fsync'd
//   append FILE RATE SECONDS OUT  a ~100-byte log line at the end, each fsync'd
// It keeps to the rate and writes what it did to OUT (JSON): the writes, the
// bytes, when the first and the last write happened (epoch ms), and the
// offsets of the pages written (for the rsync comparison's change set).

import { randomBytes } from "node:crypto";
import { closeSync, fstatSync, fsyncSync, openSync, writeFileSync, writeSync } from "node:fs";

const PAGE = 4096;
const [mode, file, rate, seconds, out] = process.argv.slice(2);
if ((mode !== "pages" && mode !== "append") || !file || !rate || !seconds || !out) throw new Error("usage: page-writer.ts pages|append FILE RATE SECONDS OUT");
const total = Math.round(Number(rate) * Number(seconds));
const fd = openSync(file, mode === "pages" ? "r+" : "a");
const pages = Math.floor(fstatSync(fd).size / PAGE);
let bytes = 0;
let first = 0;
let last = 0;
const started = Date.now();
for (let k = 0; k < total; k++) {
  const wait = started + (k * 1000) / Number(rate) - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  if (mode === "pages") {
    const page = Math.floor(Math.random() * pages);
    bytes += writeSync(fd, randomBytes(PAGE), 0, PAGE, page * PAGE);
  } else {
    bytes += writeSync(fd, `${new Date().toISOString()} request ${k} served in ${(Math.random() * 100).toFixed(2)} ms by worker ${k % 8}\n`);
  }
  fsyncSync(fd);
  last = Date.now();
  if (k === 0) first = last;
}
closeSync(fd);
writeFileSync(out, JSON.stringify({ writes: total, bytes, first, last }));
