// `tidemark run` stops cleanly on SIGINT/SIGTERM while it starts: before its
// main loop listened, Node's default handler killed it, leaving the state
// lock to the next start's stale-lock check and the journal unclosed. A
// target that accepts connections and never answers holds the start at its
// target check; the signal must end it there, and the scan of the first
// start too.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { acquireStateLock } from "../../agent/state-lock.ts";
import { spawnTidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

let work: ReturnType<typeof tempDir> | undefined;
let server: Server | undefined;
const sockets = new Set<Socket>();
afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  work?.remove();
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  it(`exits 0 on ${signal} while its target check waits, with the state lock released and the journal closed`, async () => {
    work = tempDir();
    // Accepts, reads, never answers: the start waits in its target check.
    let connected!: () => void;
    const reached = new Promise<void>((resolve) => (connected = resolve));
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on("data", () => connected());
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    mkdirSync(join(work.path, "site"));
    writeFileSync(join(work.path, "site", "index.html"), "<h1>hi</h1>");
    const config = join(work.path, "tidemark.config.json");
    const endpoint = `http://127.0.0.1:${port}`;
    writeFileSync(config, JSON.stringify({ region: "us-east-1", endpoint, queueUrl: `${endpoint}/000000000000/tidemark.fifo`, bucket: "tidemark", stateDir: "state", sets: [{ name: "www", path: "site" }] }));
    const child = spawnTidemark(["run", "--config", config], { env: { AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test" } });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, killedBy) => resolve({ code, signal: killedBy })));
    await Promise.race([reached, exited.then(() => Promise.reject(new Error(`the agent exited before its target check: ${stderr}`)))]);
    child.kill(signal);
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(stderr).toContain("stopping");
    const stateDir = join(work.path, "state");
    expect(existsSync(join(stateDir, "tidemark.lock"))).toBe(false);
    // The next start finds the state folder free and the journal whole.
    acquireStateLock(stateDir, "test").release();
    const journal = Journal.open(stateDir);
    expect(journal.sets.counters("www").nextSeq).toBe(1);
    journal.close();
  });
}
