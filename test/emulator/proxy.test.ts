// The agent's AWS requests go through one configured HTTP handler: a proxy
// (the config's, else HTTP(S)_PROXY; NO_PROXY honoured), a CA bundle, and a
// User-Agent naming tidemark. The endpoint in these tests is named
// `emulator.invalid`, which resolves nowhere: only the proxy, routing that
// name to the emulator, can reach it.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { HeadBucketCommand, ListBucketsCommand } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { clientOptionsOf } from "../../agent/aws-options.ts";
import { collectStatus } from "../../agent/commands/status.ts";
import { withTargetStore } from "../../agent/commands/target-store.ts";
import { loadConfig } from "../../agent/config.ts";
import { checkProxy } from "../../agent/doctor.ts";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { stagingKey } from "../../contract/layout.ts";
import { makeS3Client, makeSqsClient, USER_AGENT } from "../../lambdas/aws-clients.ts";
import { CaBundleError, customisedHttp, ProxySettingError, proxyPlan } from "../../lambdas/target/http-settings.ts";
import packageJson from "../../package.json" with { type: "json" };
import { CountingProxy } from "../support/counting-proxy.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { tempDir } from "../support/tree.ts";

const TLS_DIR = join(import.meta.dirname, "../fixtures/tls");
/** A self-signed certificate for 127.0.0.1 (test/fixtures/tls): trusted only when given as the CA bundle. */
const CERT_FILE = join(TLS_DIR, "server.crt");
const REGION = "us-east-1";
const ACCOUNT = "000000000000";
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("the agent's requests through a proxy to the local emulator", () => {
  let emulator: Awaited<ReturnType<typeof startTestEmulator>>;
  let proxy: CountingProxy;
  let dir: ReturnType<typeof tempDir>;
  let bucket: string;
  let queueName: string;
  let port: number;

  beforeAll(async () => {
    emulator = await startTestEmulator();
    port = Number(new URL(emulator.endpoint).port);
    proxy = await CountingProxy.start({ "emulator.invalid": { host: "127.0.0.1", port } });
  });
  afterAll(async () => {
    await proxy.stop();
    await emulator.server.stop();
  });
  beforeEach(() => {
    dir = tempDir("tidemark-proxy-");
    bucket = emulator.newBucket();
    queueName = `p-${bucket}.fifo`;
    emulator.server.createQueue(queueName, { attributes: { FifoQueue: "true" } });
  });
  afterEach(() => dir.remove());

  /** A config file whose endpoint only the proxy can reach. */
  function writeConfig(extra: Record<string, unknown>): string {
    const file = join(dir.path, "tidemark.config.json");
    const endpoint = `http://emulator.invalid:${port}`;
    mkdirSync(join(dir.path, "docs"), { recursive: true });
    writeFileSync(file, JSON.stringify({ region: REGION, endpoint, queueUrl: `${endpoint}/${ACCOUNT}/${queueName}`, bucket, stateDir: "state", sets: [{ name: "docs", path: "docs" }], ...extra }));
    return file;
  }

  const direct = (): SQSClient => makeSqsClient({ region: REGION, endpoint: emulator.endpoint, http: { proxy: false } });

  it("sends, stages, reads the status and restores only through the config's proxy, naming tidemark in every request", async () => {
    const file = writeConfig({ proxy: proxy.url });
    const config = loadConfig(file);
    const before = proxy.forwarded.length;
    const options = clientOptionsOf(config, { maxAttempts: 1 });
    const sqs = makeSqsClient(options, {});
    const s3 = makeS3Client(options, {});
    const transport = new AwsTransport({ sqs, s3, queueUrl: config.queueUrl, bucket });
    const bytes = Buffer.from("staged through the proxy");
    const key = stagingKey("docs", 1, sha256(bytes));
    try {
      await transport.stage({ set: "docs", key, sha256: sha256(bytes), size: bytes.length, source: { bytes } });
      await transport.send("docs", "docs:1-1", '{"through":"proxy"}', { signature: "s" });
    } finally {
      sqs.destroy();
      s3.destroy();
    }
    // The status and restore readers build their own clients from the same config.
    const [report] = await collectStatus(file);
    expect(report?.target.reachable).toBe(true);
    const restored = await withTargetStore(config, (store) => store.get(key));
    expect(restored?.body.toString()).toBe("staged through the proxy");

    const through = proxy.forwarded.slice(before);
    expect(through.map((r) => `${r.method} ${new URL(r.url).pathname.split("/")[1] === bucket ? "s3" : new URL(r.url).pathname === "/" ? "sqs" : "other"}`)).toEqual(
      expect.arrayContaining(["PUT s3", "POST sqs", "GET s3"]),
    );
    expect(through.every((r) => new URL(r.url).host === `emulator.invalid:${port}`)).toBe(true);
    expect(through.every((r) => String(r.headers["user-agent"]).includes(`tidemark/${packageJson.version}`))).toBe(true);
    const got = await direct().send(new ReceiveMessageCommand({ QueueUrl: `${emulator.endpoint}/${ACCOUNT}/${queueName}`, MessageAttributeNames: ["All"], WaitTimeSeconds: 1 }));
    expect(got.Messages?.map((m) => [m.Body, m.MessageAttributes?.signature?.StringValue])).toEqual([['{"through":"proxy"}', "s"]]);
  });

  it("takes HTTP_PROXY from the environment, and NO_PROXY sends a host past it", async () => {
    const options = { region: REGION, endpoint: emulator.endpoint, maxAttempts: 1 };
    const viaProxy = makeS3Client(options, { HTTP_PROXY: proxy.url });
    const bypassing = makeS3Client(options, { HTTP_PROXY: proxy.url, NO_PROXY: "localhost,127.0.0.1" });
    const bypassingPort = makeS3Client(options, { http_proxy: proxy.url, no_proxy: `127.0.0.1:${port}` });
    try {
      const before = proxy.count;
      await viaProxy.send(new ListBucketsCommand({}));
      expect(proxy.count).toBe(before + 1);
      expect(proxy.forwarded.at(-1)?.url).toBe(`${emulator.endpoint}/?x-id=ListBuckets`);
      await bypassing.send(new ListBucketsCommand({}));
      await bypassingPort.send(new ListBucketsCommand({}));
      expect(proxy.count).toBe(before + 1);
    } finally {
      viaProxy.destroy();
      bypassing.destroy();
      bypassingPort.destroy();
    }
  });

  it("cannot reach the endpoint without the proxy: the name resolves nowhere", async () => {
    const config = loadConfig(writeConfig({}));
    const s3 = makeS3Client(clientOptionsOf(config, { maxAttempts: 1 }), {});
    try {
      await expect(s3.send(new HeadBucketCommand({ Bucket: bucket }))).rejects.toThrow(/ENOTFOUND|EAI_AGAIN|getaddrinfo/);
    } finally {
      s3.destroy();
    }
  });

  it("doctor names the proxy each endpoint goes through, without its password", () => {
    const config = loadConfig(writeConfig({ proxy: "http://ops:hunter2@proxy.example.com:3128" }));
    const check = checkProxy(config, { NO_PROXY: "localhost" });
    expect(check.level).toBe("ok");
    expect(check.detail).toContain(`config proxy, NO_PROXY=localhost: emulator.invalid:${port} through http://ops:***@proxy.example.com:3128/`);
    expect(check.detail).not.toContain("hunter2");
    const bypassed = checkProxy(loadConfig(writeConfig({})), { HTTPS_PROXY: proxy.url, NO_PROXY: "emulator.invalid" });
    expect(bypassed.detail).toBe(`HTTPS_PROXY, NO_PROXY=emulator.invalid: emulator.invalid:${port} direct (NO_PROXY)`);
    const httpOnly = checkProxy(loadConfig(writeConfig({})), { HTTPS_PROXY: proxy.url });
    expect(httpOnly.detail).toBe(`HTTPS_PROXY: emulator.invalid:${port} direct (no proxy for http)`);
    expect(checkProxy(loadConfig(writeConfig({})), {}).detail).toBe("none: AWS is reached directly");
    expect(checkProxy(loadConfig(writeConfig({})), { AWS_CA_BUNDLE: CERT_FILE }).detail).toBe(`none: AWS is reached directly; CA bundle ${CERT_FILE} (AWS_CA_BUNDLE, 1 certificate)`);
    expect(() => checkProxy(loadConfig(writeConfig({})), { AWS_CA_BUNDLE: join(dir.path, "gone.pem") })).toThrow(CaBundleError);
  });
});

describe("https endpoints: CONNECT through the proxy, the CA bundle, the User-Agent", () => {
  let server: Server;
  let endpoint: string;
  let proxy: CountingProxy;
  const userAgents: string[] = [];

  beforeAll(async () => {
    server = createServer({ cert: readFileSync(CERT_FILE), key: readFileSync(join(TLS_DIR, "server.key")) }, (req, res) => {
      userAgents.push(String(req.headers["user-agent"]));
      req.resume();
      req.on("end", () => res.writeHead(200, { "x-amz-bucket-region": REGION }).end());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    proxy = await CountingProxy.start();
  });
  afterAll(async () => {
    await proxy.stop();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("tunnels to an https endpoint with CONNECT and trusts it through the CA bundle; the User-Agent names tidemark", async () => {
    const s3 = makeS3Client({ region: REGION, endpoint, maxAttempts: 1, http: { caBundle: CERT_FILE } }, { HTTPS_PROXY: proxy.url });
    try {
      await s3.send(new HeadBucketCommand({ Bucket: "b" }));
    } finally {
      s3.destroy();
    }
    expect(proxy.tunnels).toEqual([new URL(endpoint).host]);
    expect(USER_AGENT).toBe(`tidemark/${packageJson.version}`);
    expect(userAgents.at(-1)).toMatch(new RegExp(`(^| )tidemark/${packageJson.version.replace(/\./g, "\\.")}( |$)`));
  });

  it("refuses the endpoint's certificate without the bundle, and takes the bundle from AWS_CA_BUNDLE", async () => {
    const untrusting = makeS3Client({ region: REGION, endpoint, maxAttempts: 1 }, {});
    const fromEnvironment = makeS3Client({ region: REGION, endpoint, maxAttempts: 1 }, { AWS_CA_BUNDLE: CERT_FILE });
    try {
      await expect(untrusting.send(new HeadBucketCommand({ Bucket: "b" }))).rejects.toThrow(/self-signed|certificate/i);
      await expect(fromEnvironment.send(new HeadBucketCommand({ Bucket: "b" }))).resolves.toBeDefined();
    } finally {
      untrusting.destroy();
      fromEnvironment.destroy();
    }
  });
});

describe("proxy and CA bundle settings", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir("tidemark-http-settings-");
  });
  afterEach(() => dir.remove());

  const write = (extra: Record<string, unknown>) => {
    const file = join(dir.path, "tidemark.config.json");
    mkdirSync(join(dir.path, "www"), { recursive: true });
    writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "www", path: "www" }], ...extra }));
    return file;
  };

  it("loads a CA bundle relative to the config file and refuses one that is missing or holds no certificate", () => {
    writeFileSync(join(dir.path, "corp-ca.pem"), readFileSync(CERT_FILE));
    expect(loadConfig(write({ caBundle: "corp-ca.pem" })).caBundle).toBe(join(dir.path, "corp-ca.pem"));
    expect(() => loadConfig(write({ caBundle: "missing.pem" }))).toThrow(new RegExp(`caBundle: cannot read the CA bundle ${join(dir.path, "missing.pem")} \\(caBundle\\): ENOENT`));
    writeFileSync(join(dir.path, "not-pem.txt"), "just text");
    expect(() => loadConfig(write({ caBundle: "not-pem.txt" }))).toThrow(/caBundle: the CA bundle .*not-pem\.txt \(caBundle\) holds no PEM certificate/);
    writeFileSync(join(dir.path, "broken.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    expect(() => loadConfig(write({ caBundle: "broken.pem" }))).toThrow(/certificate 1 of the CA bundle .*broken\.pem \(caBundle\) is not valid/);
  });

  it("refuses a proxy that is not an http(s) URL, a proxy key misspelt, and a bad AWS_CA_BUNDLE at client construction", () => {
    expect(() => loadConfig(write({ proxy: "socks5://127.0.0.1:1080" }))).toThrow(/proxy: an http:\/\/ or https:\/\/ URL/);
    expect(() => loadConfig(write({ proxi: "http://p:3128" }))).toThrow(/unknown key "proxi" \(did you mean "proxy"\?\)/);
    expect(() => loadConfig(write({ cabundle: "x.pem" }))).toThrow(/unknown key "cabundle" \(did you mean "caBundle"\?\)/);
    expect(() => makeS3Client({ region: REGION }, { AWS_CA_BUNDLE: join(dir.path, "nowhere.pem") })).toThrow(CaBundleError);
    expect(() => makeS3Client({ region: REGION }, { HTTPS_PROXY: "proxy.example.com:3128" })).toThrow(ProxySettingError);
  });

  it("keeps the applier's direct S3 requests only where no proxy or CA bundle applies", () => {
    expect(customisedHttp({}, {})).toBe(false);
    expect(customisedHttp({}, { HTTPS_PROXY: "http://p:3128" })).toBe(true);
    expect(customisedHttp({}, { AWS_CA_BUNDLE: CERT_FILE })).toBe(true);
    expect(customisedHttp({ proxy: false }, { HTTPS_PROXY: "http://p:3128" })).toBe(false);
  });

  it("refuses a proxy on a Node without proxy support rather than going around it", () => {
    expect(() => proxyPlan({ proxy: "http://p:3128" }, {}, "24.4.1")).toThrow(/needs Node 24\.5 or later/);
    expect(proxyPlan({ proxy: "http://p:3128" }, {}, "24.5.0")?.https).toBe("http://p:3128");
    expect(proxyPlan({}, {}, "22.0.0")).toBeUndefined();
  });
});
