// In-process timing of a marker's agent-side steps on an unchanged tree
// (bench/notes.md, "Marker latency: where the time goes"): the barrier scan
// and the marker's digest, each timed alone, then both as a marker runs them
// (the digest read beside the scan, agent/early-digest.ts), wall and CPU.
//   node bench/marker-scan.ts [files] [rounds] [folder]
// With a folder, its tree and journal are kept there and reused by the next
// run (built once: on a busy machine that takes minutes).

import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMarkerDigest } from "../agent/early-digest.ts";
import { Journal } from "../agent/journal.ts";
import { fileSetMarkerDigest } from "../agent/marker-digest.ts";
import { barrierScan } from "../agent/scan.ts";

const files = Number(process.argv[2] ?? "100000");
const rounds = Number(process.argv[3] ?? "5");
const kept = process.argv[4];
const dir = kept ?? mkdtempSync(join(tmpdir(), "tidemark-marker-scan-"));
const root = join(dir, "tree");
const built = kept !== undefined && existsSync(join(dir, "built"));
if (!built) {
  for (let i = 0; i < files; i++) {
    if (i % 1000 === 0) mkdirSync(join(root, `d${i / 1000}`), { recursive: true });
    writeFileSync(join(root, `d${Math.floor(i / 1000)}`, `f${i}`), `initial ${i}\n`);
  }
}
const journal = Journal.open(join(dir, "state"));
const spec = { name: "marker", root, exclude: [] };
try {
  if (!built) {
    await barrierScan(journal, spec);
    // Files written within the last seconds are captured again (modifiedRecently): wait until the tree is old enough.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await barrierScan(journal, spec);
    if (kept !== undefined) writeFileSync(join(dir, "built"), "");
  }
  const time = async (name: string, step: () => Promise<unknown>) => {
    const cpu = process.cpuUsage();
    const start = performance.now();
    await step();
    const used = process.cpuUsage(cpu);
    return `${name} ${(performance.now() - start).toFixed(0)} ms (cpu ${((used.user + used.system) / 1000).toFixed(0)})`;
  };
  for (let round = 0; round < rounds; round++) {
    const scan = await time("scan", () => barrierScan(journal, spec));
    const digest = await time("digest", () => fileSetMarkerDigest(journal, spec.name));
    const marker = await time("marker", async () => {
      const read = startMarkerDigest(journal, spec, { action: "snapshot", timeoutSeconds: 60 });
      await barrierScan(journal, spec);
      return read.finish();
    });
    console.log(`${scan}  ${digest}  ${marker}`);
  }
} finally {
  journal.close();
  if (kept === undefined) rmSync(dir, { recursive: true, force: true });
}
