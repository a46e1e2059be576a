import { createServer } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { delayProxy, describeModel, requestDelayMs, type DelayProxy, type LatencyModel } from "../../bench/latency.ts";
import { appliedAll } from "../../bench/support.ts";

const model: LatencyModel = { wanRttMs: 40, s3LatencyMs: 20, sqsLatencyMs: 10, lambdaCpu: 0.6 };

describe("the bench's AWS-latency model", () => {
  it("charges the source host the WAN round trip plus the service's latency, and the applier only the service's", () => {
    expect(requestDelayMs(model, "source", false)).toBe(60);
    expect(requestDelayMs(model, "source", true)).toBe(50);
    expect(requestDelayMs(model, "applier", false)).toBe(20);
    expect(requestDelayMs(model, "applier", true)).toBe(10);
    expect(describeModel(model)).toBe("WAN RTT 40 ms, S3 20 ms, SQS 10 ms, applier 0.6 vCPU");
    expect(describeModel({ wanRttMs: 0, s3LatencyMs: 0, sqsLatencyMs: 0, lambdaCpu: 0 })).toBe("loopback");
  });

  let proxy: DelayProxy | undefined;
  let closeUpstream: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await proxy?.close();
    await closeUpstream?.();
  });

  it("passes requests and answers through unchanged: method, path, headers, bodies, status", async () => {
    const upstream = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        res.writeHead(207, { "x-seen": `${req.method} ${req.url} ${String(req.headers["x-amz-target"])}` });
        res.end(`echo:${body}`);
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    closeUpstream = () => new Promise((resolve) => upstream.close(() => resolve()));
    const port = (upstream.address() as { port: number }).port;
    proxy = await delayProxy(`http://127.0.0.1:${port}`, { ...model, wanRttMs: 1, s3LatencyMs: 1, sqsLatencyMs: 1 }, "source");
    const reply = await fetch(`${proxy.endpoint}/bucket/a%20key?x=1`, { method: "PUT", headers: { "x-amz-target": "AmazonSQS.SendMessage" }, body: "payload" });
    expect(reply.status).toBe(207);
    expect(reply.headers.get("x-seen")).toBe("PUT /bucket/a%20key?x=1 AmazonSQS.SendMessage");
    expect(await reply.text()).toBe("echo:payload");
  });
});

describe("the bench's wait for changes to arrive", () => {
  it("is done only once every path of the set was applied, whatever order they arrive in", () => {
    const appliedAt = new Map<string, number>();
    const done = appliedAll({ appliedAt }, "s", ["a", "b", "c"]);
    expect(done()).toBe(false);
    appliedAt.set("s:c", 1);
    appliedAt.set("other:a", 1);
    expect(done()).toBe(false);
    appliedAt.set("s:a", 2);
    expect(done()).toBe(false);
    appliedAt.set("s:b", 3);
    expect(done()).toBe(true);
    expect(appliedAll({ appliedAt }, "s", [])()).toBe(true);
  });
});
