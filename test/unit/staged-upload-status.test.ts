// While a large staged upload goes on, nothing after it is sent: `tidemark
// status` (which reads the journal, not the agent) names the upload and how
// far it got, so "0 msgs sent" for minutes has a reason beside it.
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import { spawnSync } from "node:child_process";
import { mkdirSync, truncateSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { collectStatus, statusCommand } from "../../agent/commands/status.ts";
import { Journal, type Change } from "../../agent/journal.ts";
import { acquireStateLock } from "../../agent/state-lock.ts";
import { sendNext } from "../../agent/sender.ts";
import { LARGE_STAGED_BYTES, stageNamed, uploadsNow } from "../../agent/staged-uploads.ts";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { RateLimitedTransport } from "../../agent/transport/bandwidth.ts";
import type { StagedPayload, Transport } from "../../agent/transport/transport.ts";
import { MULTIPART_THRESHOLD } from "../../lambdas/s3-multipart.ts";
import { captureServerForTests } from "../support/capture-server.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "www";

describe("the AWS transport", () => {
  const capture = captureServerForTests();

  it("tells a payload staged in parts the bytes S3 holds so far, part by part, up to its size; a callback that throws fails nothing", async () => {
    capture.server.responder = (request, res) => {
      const url = new URL(request.url, "http://x");
      const xml = (body: string) => {
        res.writeHead(200, { "content-type": "application/xml" });
        res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
      };
      if (request.method === "POST" && url.searchParams.has("uploads")) return xml(`<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>`);
      if (request.method === "POST") return xml(`<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"parts"</ETag></CompleteMultipartUploadResult>`);
      res.writeHead(200, { etag: `"part-${url.searchParams.get("partNumber") ?? "all"}"` });
      res.end();
    };
    const options = { region: "us-east-1", endpoint: capture.server.endpoint, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1 };
    const s3 = new S3Client({ ...options, forcePathStyle: true });
    const sqs = new SQSClient(options);
    try {
      const transport = new AwsTransport({ s3, sqs, queueUrl: `${capture.server.endpoint}/q.fifo`, bucket: "b" });
      const bytes = Buffer.alloc(2 * MULTIPART_THRESHOLD + 1000, 7);
      const told: number[] = [];
      await transport.stage({ set: SET, key: "staging/www/1.x", sha256: sha(bytes), size: bytes.length, source: { bytes }, progress: (stored) => told.push(stored) });
      expect(told).toHaveLength(3);
      expect([...told].sort((a, b) => a - b)).toEqual(told);
      expect(told.at(-1)).toBe(bytes.length);

      // A callback that throws fails no part: the upload completes.
      let calls = 0;
      const throwing = (): never => {
        calls += 1;
        throw new Error("status is broken");
      };
      await transport.stage({ set: SET, key: "staging/www/3.x", sha256: sha(bytes), size: bytes.length, source: { bytes }, progress: throwing });
      expect(calls).toBe(3);

      // An attempt that fails is aborted, S3 keeping none of its parts: the bytes told go back to 0.
      const answer = capture.server.responder;
      capture.server.responder = (request, res) => {
        if (new URL(request.url, "http://x").searchParams.get("partNumber") === "3") {
          res.writeHead(403, { "content-type": "application/xml" });
          res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>`);
          return;
        }
        answer?.(request, res);
      };
      told.length = 0;
      const failing = { set: SET, key: "staging/www/2.x", sha256: sha(bytes), size: bytes.length, source: { bytes }, progress: (stored: number) => told.push(stored) };
      await expect(transport.stage(failing)).rejects.toThrow();
      expect(told.at(-1)).toBe(0);
    } finally {
      s3.destroy();
      sqs.destroy();
    }
  });
});

describe("tidemark status while a large payload is staged", () => {
  let server: Server;
  let dir: ReturnType<typeof tempDir>;
  let config: string;
  let journal: Journal;
  let stateDir: string;

  beforeAll(async () => {
    // The target answers nothing useful: what status says of the upload comes from the journal alone.
    server = createServer((request, response) => {
      request.resume();
      response.writeHead(503, { "content-type": "application/xml" }).end("<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = tempDir();
    mkdirSync(join(dir.path, "www"));
    stateDir = join(dir.path, "state");
    config = join(dir.path, "tidemark.config.json");
    writeFileSync(config, JSON.stringify({ endpoint, queueUrl: `${endpoint}/000000000000/q.fifo`, bucket: "bucket", stateDir, sets: [{ name: SET, path: "www" }] }));
    journal = Journal.open(stateDir);
  });
  afterEach(() => {
    journal.close();
    dir.remove();
  });

  /** A transport that tells the large payload's upload got `stored` bytes, then holds it until released. */
  function heldUpload(stored: number) {
    let release: () => void = () => undefined;
    let told: () => void = () => undefined;
    const progressed = new Promise<void>((resolve) => (told = resolve));
    const transport: Transport = {
      async stage(payload: StagedPayload) {
        if (payload.size <= LARGE_STAGED_BYTES) return;
        payload.progress?.(stored);
        told();
        await new Promise<void>((resolve) => (release = resolve));
      },
      async send() {},
    };
    return { transport, progressed, release: () => release() };
  }

  function large(path: string, size: number): Change {
    writeFileSync(join(journal.spoolDir, path), "");
    truncateSync(join(journal.spoolDir, path), size);
    return { op: "put", path, size, mode: 0o644, mtimeNs: "1", sha256: sha(path), content: { spool: path } };
  }

  it("names what is uploading and how far, in the text and --json, and nothing once it is staged", async () => {
    const size = 3 * 1024 ** 3;
    const small: Change = { op: "put", path: "a.txt", size: 1, mode: 0o644, mtimeNs: "1", sha256: sha("a"), content: { bytes: Buffer.from("a") } };
    journal.append(SET, [small, large("big.bin", size)]);
    // This process stands for the agent: it holds the state folder's lock, as `tidemark run` does.
    const lock = acquireStateLock(stateDir, "tidemark run");
    let held = true;
    try {
      const upload = heldUpload(1024 ** 3);
      const draining = (async () => {
        while ((await sendNext(journal, upload.transport, SET, { compression: "none" })).records > 0);
      })();
      await upload.progressed;

      const [report] = await collectStatus(config);
      expect(report?.uploading).toEqual([{ what: "big.bin", seq: 2, bytes: size, done: 1024 ** 3, since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) }]);
      const out: string[] = [];
      const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
        out.push(String(chunk));
        return true;
      });
      const runs: string[] = [];
      try {
        await statusCommand.run({ config }, []);
        runs.push(out.splice(0).join(""));
        await statusCommand.run({ config, json: true }, []);
        runs.push(out.splice(0).join(""));
      } finally {
        write.mockRestore();
      }
      const [text, json] = runs;
      expect(text).toMatch(/^www: uploading big\.bin \(seq 2\) since \S+: 1\.0 GiB of 3\.0 GiB stored \(33%\); the records after it are sent once it is staged$/m);
      expect(JSON.parse(json ?? "").sets[0].uploading).toEqual(report?.uploading);

      // An agent that is not running uploads nothing, whatever its rows say.
      lock.release();
      held = false;
      expect((await collectStatus(config))[0]?.uploading).toEqual([]);
      upload.release();
      await draining;
    } finally {
      if (held) lock.release();
    }
    expect(journal.uploads.of(SET)).toEqual([]);
    expect(journal.sets.counters(SET).backlogRecords).toBe(0);
  });

  it("says that an upload waits for the bandwidth budget rather than that it stored 0 B, in the text and --json", async () => {
    const size = 3 * 1024 ** 3;
    journal.append(SET, [large("big.bin", size)]);
    const lock = acquireStateLock(stateDir, "tidemark run");
    try {
      // What the journal says of the upload once it goes.
      let going: ReturnType<typeof journal.uploads.of> = [];
      const inner: Transport = {
        async stage() {
          going = journal.uploads.of(SET);
        },
        async send() {},
      };
      let slept: () => void = () => undefined;
      const sleeping = new Promise<void>((resolve) => (slept = resolve));
      let wake: () => void = () => undefined;
      // A clock that moves by each sleep, the first held until the test wakes it (the message after the upload waits
      // for the upload's own debt: that sleep is not held).
      let clock = Date.now();
      let held = true;
      const limited = new RateLimitedTransport(inner, { bytesPerSecond: 1_000 }, {
        now: () => new Date(clock),
        sleep: async (ms) => {
          if (held) {
            held = false;
            slept();
            await new Promise<void>((resolve) => (wake = resolve));
          }
          clock += ms;
        },
      });
      // A message larger than the bucket went: the upload after it waits for that debt.
      await limited.send(SET, "before", "x".repeat(5_000));
      const draining = (async () => {
        while ((await sendNext(journal, limited, SET, { compression: "none" })).records > 0);
      })();
      await sleeping;
      const [report] = await collectStatus(config);
      expect(report?.uploading).toEqual([{ what: "big.bin", seq: 1, bytes: size, done: 0, since: expect.any(String), waitingForBandwidth: { since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) } }]);
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
      expect(out.join("")).toMatch(/^www: uploading big\.bin \(seq 1\) since \S+: waiting since \S+ for the bandwidth budget \(the config's "bandwidth" limit\) before it goes on, 0 B of 3\.0 GiB stored \(0%\); the records after it are sent once it is staged$/m);
      wake();
      await draining;
      // Once it goes, it waits no more.
      expect(going).toEqual([expect.objectContaining({ what: "big.bin" })]);
      expect(going[0]?.waitingSince).toBeUndefined();
      expect(journal.uploads.of(SET)).toEqual([]);
    } finally {
      lock.release();
    }
  });

  it("says that the message after a large upload waits for the upload's debt, in the text and --json, and nothing once it goes", async () => {
    const size = 3 * 1024 ** 3;
    journal.append(SET, [large("big.bin", size)]);
    const lock = acquireStateLock(stateDir, "tidemark run");
    try {
      const inner: Transport = { async stage() {}, async send() {} };
      let slept: () => void = () => undefined;
      const sleeping = new Promise<void>((resolve) => (slept = resolve));
      let wake: () => void = () => undefined;
      let clock = Date.now();
      // The upload goes at once (a full bucket) and is charged its whole size: the message naming it then sleeps the
      // debt off, held here until the test wakes it.
      const limited = new RateLimitedTransport(inner, { bytesPerSecond: 1_000_000 }, {
        now: () => new Date(clock),
        sleep: async (ms) => {
          slept();
          await new Promise<void>((resolve) => (wake = resolve));
          clock += ms;
        },
        // As the agent records it (runtime.ts).
        onSendWait: (set, waiting) => journal.sets.recordBandwidthWait(set, waiting ? new Date(clock).toISOString() : null),
      });
      const draining = (async () => {
        while ((await sendNext(journal, limited, SET, { compression: "none" })).records > 0);
      })();
      await sleeping;
      const [report] = await collectStatus(config);
      expect(report?.uploading).toEqual([]);
      expect(report?.waitingForBandwidth).toEqual({ since: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
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
      expect(out.join("")).toMatch(/^www: its next message waits since \S+ for the bandwidth budget \(the config's "bandwidth" limit: an upload before it is charged its whole size\), and the records after it with it$/m);
      wake();
      await draining;
      expect(journal.sets.bandwidthWaitSince(SET)).toBeNull();
      expect((await collectStatus(config))[0]?.waitingForBandwidth).toBeUndefined();
    } finally {
      lock.release();
    }
  });

  it("names no upload an agent left when it stopped, nor one of another host, and the next upload clears their rows", () => {
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    if (gone === undefined) throw new Error("no process was started");
    const left = { key: "staging/www/7.x", seq: 7, what: "old.bin", size: 100, since: new Date().toISOString(), pid: gone, host: hostname() };
    journal.uploads.begin(SET, "a1", left);
    journal.uploads.begin(SET, "a2", { ...left, key: "staging/www/9.x", seq: 9, pid: process.pid, host: "another-host" });
    expect(journal.uploads.of(SET)).toHaveLength(1);
    expect(uploadsNow(journal.uploads, SET)).toEqual([]);
    journal.uploads.begin(SET, "a3", { ...left, key: "staging/www/8.x", seq: 8, what: "new.bin", pid: process.pid });
    expect(journal.uploads.of(SET).map((u) => u.what)).toEqual(["new.bin"]);
    expect(uploadsNow(journal.uploads, SET).map((u) => u.what)).toEqual(["new.bin"]);
  });

  it("writes progress at most every PROGRESS_WRITE_MS, but a failed attempt's 0 at once; a failed upload leaves no row", async () => {
    let t = 0;
    const rows = () => journal.uploads.of(SET).map((u) => u.done);
    const seen: number[][] = [];
    const transport: Transport = {
      async stage(payload: StagedPayload) {
        const tell = (at: number, stored: number) => {
          t = at;
          payload.progress?.(stored);
          seen.push(rows());
        };
        tell(0, 8);
        tell(500, 16);
        tell(1_100, 24);
        tell(1_200, 0);
        throw new Error("connection reset");
      },
      async send() {},
    };
    const payload = { set: SET, key: "staging/www/3.x", sha256: sha("x"), size: LARGE_STAGED_BYTES + 1, source: { bytes: Buffer.alloc(0) }, seq: 3, what: "big.bin" };
    await expect(stageNamed(journal, transport, payload, () => t)).rejects.toThrow(/connection reset/);
    expect(seen).toEqual([[8], [8], [24], [0]]);
    expect(journal.uploads.of(SET)).toEqual([]);
  });

  it("leaves the row of an upload alone when another upload of the same key ends (a refused message's stage left running)", async () => {
    const releases: (() => void)[] = [];
    const transport: Transport = {
      async stage(payload: StagedPayload) {
        payload.progress?.(releases.length + 1);
        await new Promise<void>((resolve) => releases.push(resolve));
      },
      async send() {},
    };
    const payload = { set: SET, key: "staging/www/4.x", sha256: sha("y"), size: LARGE_STAGED_BYTES + 1, source: { bytes: Buffer.alloc(0) }, seq: 4, what: "big.bin" };
    const orphan = stageNamed(journal, transport, payload);
    const again = stageNamed(journal, transport, payload);
    await new Promise((resolve) => setImmediate(resolve));
    expect(journal.uploads.of(SET).map((u) => u.done)).toEqual([2]);
    releases[0]?.();
    await orphan;
    expect(journal.uploads.of(SET).map((u) => u.done)).toEqual([2]);
    releases[1]?.();
    await again;
    expect(journal.uploads.of(SET)).toEqual([]);
  });
});
