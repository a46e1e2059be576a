// A restore gives up as a whole instead of failing every file left one by one (QA G8): a target that stops answering
// stops it after GIVE_UP.targetFailures files failed on it in a row (or after a failure with nothing written for
// noProgressMs), and a local full disk, quota or read-only file system (ENOSPC, EDQUOT, EROFS) stops it at once. Either
// way one error says what was written and how to go on; the files written stay, no temp file does. Failures are
// counted, never timed.

import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { GIVE_UP, RestoreStoppedError, WRITE_CONCURRENCY, writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import type * as TempFile from "../../agent/temp-file.ts";
import { Http1Pool } from "../../lambdas/http1-pool.ts";
import { tempDir } from "../support/tree.ts";

/** Writes refused as by a full disk (or quota, or read-only file system): its code, after `after` files were opened. */
const disk = { code: "", after: 0, opened: 0, refused: 0 };

vi.mock("../../agent/temp-file.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof TempFile>();
  const openNewFile = async (...args: Parameters<typeof actual.openNewFile>) => {
    const handle = await actual.openNewFile(...args);
    if (disk.code === "" || ++disk.opened <= disk.after) return handle;
    const refuse = async () => {
      disk.refused += 1;
      throw Object.assign(new Error(`${disk.code}: no space left on device, write`), { code: disk.code, errno: -28, syscall: "write" });
    };
    return Object.assign(handle, { writev: refuse, write: refuse });
  };
  return { ...actual, openNewFile };
});

const dirs: ReturnType<typeof tempDir>[] = [];
const closers: (() => void)[] = [];
afterEach(() => {
  Object.assign(disk, { code: "", after: 0, opened: 0, refused: 0 });
  for (const close of closers.splice(0)) close();
  for (const dir of dirs.splice(0)) dir.remove();
});

const T = "1000000000000";
const bodyOf = (i: number) => Buffer.from(`file ${i}\n`);
function files(count: number): RecoveryEntry[] {
  return Array.from({ length: count }, (_, i) => ({ path: `f${i}`, kind: "file" as const, size: bodyOf(i).length, mode: 0o644, mtimeNs: T, sha256: createHash("sha256").update(bodyOf(i)).digest("hex") }));
}
function folder(): string {
  const dir = tempDir("tidemark-give-up-");
  dirs.push(dir);
  return join(dir.path, "out");
}

/**
 * A 127.0.0.1 endpoint that answers its first `answered` GETs (the file's bytes, from its path) and then accepts
 * connections and reads requests but never answers (a hung target, a black-holing proxy). Counts the requests.
 */
async function hangingTarget(answered: number): Promise<{ requests: () => number; get: (path: string) => Promise<Buffer> }> {
  let requests = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    // The client drops connections it gave up on.
    socket.on("error", () => undefined);
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const path = /^GET \/(\S+)/.exec(head)?.[1] ?? "";
      head = head.slice(end + 4);
      requests += 1;
      if (requests > answered) return;
      const body = bodyOf(Number(path.slice(1)));
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      socket.write(body);
    });
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("no port");
  const url = new URL(`http://127.0.0.1:${address.port}`);
  // Each request gives up after 100 ms without a byte (the CLI's is 15 s).
  const pool = new Http1Pool(url, { maxSockets: WRITE_CONCURRENCY, timeoutMs: 100 });
  closers.push(() => {
    pool.close();
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return {
    requests: () => requests,
    get: async (path) => {
      const answer = await pool.request("GET", `/${path}`, { host: url.host }, new Uint8Array());
      if (answer.status !== 200) throw new Error(`status ${answer.status}`);
      return answer.body;
    },
  };
}

describe("restore gives up on a target that stopped answering", () => {
  it("stops after GIVE_UP.targetFailures files failed in a row, naming what was written and how to go on, instead of failing all the rest", async () => {
    const entries = files(600);
    const target = await hangingTarget(40);
    const to = folder();
    const stopped = await writeRecoveryPoint({ entries, content: (entry) => target.get(entry.path) }, to).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(stopped).toBeInstanceOf(RestoreStoppedError);
    const message = (stopped as Error).message;
    expect(message).toMatch(/^restore stopped: the target failed \d+ files in a row with none written between them \(the last: .*no answer from 127\.0\.0\.1:\d+ in 0\.1 s\)/);
    expect(message).toContain(`40 of 600 files (`);
    expect(message).toContain("re-run the restore with --force to write the rest");
    // The files written stay; nothing else is there (no temp names).
    expect(readdirSync(to).filter((name) => name.startsWith(".tm-"))).toEqual([]);
    expect(readdirSync(to)).toHaveLength(40);
    // Asked for: the 40 answered, the give-up's failures and at most the writes in flight when it gave up, not all 600.
    expect(target.requests()).toBeGreaterThanOrEqual(40 + GIVE_UP.targetFailures);
    expect(target.requests()).toBeLessThanOrEqual(40 + GIVE_UP.targetFailures + WRITE_CONCURRENCY);
  });

  it("stops after a target failure when nothing was written for noProgressMs (0 here: the first such failure)", async () => {
    const target = await hangingTarget(5);
    const stopped = await writeRecoveryPoint({ entries: files(200), content: (entry) => target.get(entry.path) }, folder(), { giveUp: { targetFailures: 1000, noProgressMs: 0 } }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect((stopped as Error).message).toMatch(/^restore stopped: the target failed 1 files in a row and nothing was written for \d+ s/);
    expect(target.requests()).toBeLessThanOrEqual(5 + 1 + WRITE_CONCURRENCY);
  });

  it("does not give up on files the target answers for but cannot give (a missing object): each is named, the rest written", async () => {
    const entries = files(200);
    const report = await writeRecoveryPoint(
      {
        entries,
        content: async (entry) => {
          if (Number(entry.path.slice(1)) % 2 === 0) throw Object.assign(new Error(`${entry.path}: not in the bucket`), { name: "NoSuchKey", $metadata: { httpStatusCode: 404 } });
          return bodyOf(Number(entry.path.slice(1)));
        },
      },
      folder(),
    );
    expect([report.files, report.failures.length]).toEqual([100, 100]);
  });
});

describe("restore stops at once on a local full disk", () => {
  for (const code of ["ENOSPC", "EDQUOT", "EROFS"]) {
    it(`stops at the first ${code}: one error with what was written and how much more is needed, not one line a file left`, async () => {
      Object.assign(disk, { code, after: 20 });
      const entries = files(500);
      const to = folder();
      const stopped = await writeRecoveryPoint({ entries, content: async (entry) => bodyOf(Number(entry.path.slice(1))) }, to).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(stopped).toBeInstanceOf(RestoreStoppedError);
      const message = (stopped as Error).message;
      expect(message).toMatch(new RegExp(`^restore stopped: the file system under .* (is full|is over its disk quota|is read-only) \\(${code}: `));
      if (code !== "EROFS") expect(message).toMatch(/: about \d+(\.\d)? (B|KiB) more is needed(, [\d.]+ \w+ free)?;/);
      expect(message).toContain("20 of 500 files (");
      expect(message).toContain("re-run the restore with --force to write the rest");
      // Refused: the first file and at most the others in flight beside it; no temp file left.
      expect(disk.refused).toBeGreaterThanOrEqual(1);
      expect(disk.refused).toBeLessThanOrEqual(WRITE_CONCURRENCY);
      expect(readdirSync(to).filter((name) => name.startsWith(".tm-"))).toEqual([]);
      expect(readdirSync(to)).toHaveLength(20);
    });
  }
});
