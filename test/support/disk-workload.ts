// A busy disk for the volume tests: writes continuously to a disk image until
// killed, at random offsets (not aligned to blocks), random lengths from 512
// bytes to 192 KiB, some of them zeros, some spanning two blocks. Runs of
// writes go to a hot region, as a database's would.
// Run: node test/support/disk-workload.ts IMAGE SEED

import { fstatSync, openSync, writeSync } from "node:fs";
import { seededRandom } from "./seeded-random.ts";

const image = process.argv[2] ?? "";
const seedText = process.argv[3] ?? "";
if (image === "" || seedText === "") throw new Error("usage: disk-workload.ts IMAGE SEED");

const random = seededRandom(Number(seedText));

const fd = openSync(image, "r+");
const size = fstatSync(fd).size;
const hot = random(Math.max(1, size - 8 * 1024 * 1024));
const buffer = Buffer.alloc(192 * 1024);

for (let step = 0; ; step++) {
  const length = 512 + random(buffer.length - 512);
  const offset = random(4) === 0 ? random(size - length) : hot + random(8 * 1024 * 1024 - length);
  if (random(10) === 0) buffer.fill(0, 0, length);
  else for (let i = 0; i + 4 <= length; i += 4) buffer.writeUInt32LE((step * 2654435761 + i * 40503 + random(65536)) >>> 0, i);
  writeSync(fd, buffer, 0, length, offset);
  // A pause now and then, so the writes spread over time instead of one burst.
  if (step % 64 === 63) await new Promise((resolve) => setTimeout(resolve, 2));
}
