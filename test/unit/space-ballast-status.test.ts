// Status named the space ballast only inside a full disk's problem: once journaling resumed nothing said it was gone
// (made again only with 6 MiB free), so the next full disk paused sending with no warning, and doctor said nothing.
// Status and doctor now say when the state folder holds none, and why (a line, not a problem); and the problem says
// what deleting it freed, as measured (on a filesystem with snapshots, nothing).

import { linkSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { collectStatus, statusCommand } from "../../agent/commands/status.ts";
import { checkSpaceBallast } from "../../agent/doctor.ts";
import { JournalHealth, spaceBallastNote } from "../../agent/journal-health.ts";
import { Journal } from "../../agent/journal.ts";
import { silentLogger } from "../../agent/log.ts";
import type { AgentProblem } from "../../agent/problem-file.ts";
import { BALLAST_FILE } from "../../agent/space-ballast.ts";
import { canMountTmpfs, mountTmpfs, unmountTmpfs } from "../support/tmpfs.ts";
import { tempDir } from "../support/tree.ts";

let server: Server;
let dir: ReturnType<typeof tempDir>;
let config: string;
let stateDir: string;

beforeAll(async () => {
  // A target that answers every request with a server error at once: status names it unreachable and reads no more.
  server = createServer((request, response) => {
    request.resume();
    response.writeHead(503, { "content-type": "application/xml" }).end("<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = tempDir();
  mkdirSync(join(dir.path, "www"));
  stateDir = join(dir.path, "s");
  mkdirSync(stateDir);
  config = join(dir.path, "tidemark.config.json");
  writeFileSync(config, JSON.stringify({ endpoint, queueUrl: `${endpoint}/000000000000/q.fifo`, bucket: "bucket", stateDir: "s", sets: [{ name: "www", path: "www" }] }));
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  dir.remove();
});

it("names a state folder an agent ran on that holds no ballast, in status (a line, no problem) and doctor (a warning)", async () => {
  // No agent ran here yet: nothing to say.
  expect(spaceBallastNote(stateDir)).toBeNull();
  expect(checkSpaceBallast(stateDir)).toBeUndefined();
  Journal.open(stateDir).close();

  const note = /^space ballast missing \(.*\/s\/space-ballast\): a disk filled to its last byte would pause sending; the agent makes it when 6\.0 MiB are free in .*\/s \([\d.]+ MiB free now/;
  expect(spaceBallastNote(stateDir)).toMatch(note);
  expect(checkSpaceBallast(stateDir)).toMatchObject({ name: "space ballast", level: "warn", detail: expect.stringMatching(note) });
  const [report] = await collectStatus(config);
  expect(report?.spaceBallast).toMatch(note);
  expect(report?.problems.map((p) => p.message).join("\n")).not.toMatch(/ballast/);

  const out: string[] = [];
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    out.push(String(chunk));
    return true;
  });
  try {
    await statusCommand.run({ config }, []);
  } finally {
    write.mockRestore();
  }
  expect(out.join("")).toMatch(/^state folder: space ballast missing \(/m);

  // A directory in its place, which the agent does not remove.
  mkdirSync(join(stateDir, BALLAST_FILE));
  expect(spaceBallastNote(stateDir)).toMatch(/space-ballast is a directory, not the space ballast: remove it/);
});

it("says nothing once the agent holds its ballast", () => {
  const own = tempDir();
  const journal = Journal.open(own.path);
  const health = new JournalHealth({ journal, log: silentLogger, monitorEnabled: false, onResumed: async () => undefined, onCorrupt: () => undefined });
  try {
    expect(spaceBallastNote(own.path)).toBeNull();
  } finally {
    health.stop();
    journal.close();
    own.remove();
  }
});

describe.skipIf(!canMountTmpfs)("on a real tmpfs (as root, where mounting is permitted)", () => {
  it("says what deleting the ballast freed, as measured: nothing while another name (as a snapshot would) keeps its blocks", () => {
    const mount = tempDir();
    mountTmpfs(mount.path, 16);
    let journal: Journal | undefined;
    let health: JournalHealth | undefined;
    try {
      journal = Journal.open(mount.path);
      const problems: (AgentProblem | null)[] = [];
      health = new JournalHealth({ journal, log: silentLogger, monitorEnabled: false, onResumed: async () => undefined, onCorrupt: () => undefined, onProblem: (p) => problems.push(p) });
      linkSync(join(mount.path, BALLAST_FILE), join(mount.path, "kept-by-a-snapshot"));
      expect(health.handle(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }))).toBe(true);
      expect(problems.at(-1)?.problem).toMatch(
        /deleted the 2 MiB space ballast \(.*\) at \S+ so that sent messages can still be marked: that freed nothing \(a filesystem with snapshots, or another link to the file, keeps its blocks\), free space now [\d.]+ MiB/,
      );
    } finally {
      try {
        health?.stop();
        journal?.close();
      } finally {
        unmountTmpfs(mount.path);
        mount.remove();
      }
    }
  });
});
