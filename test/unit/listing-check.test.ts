// S3Store.list proves its listing: a store whose pages come out of byte
// order, repeat a key, or stop without a way on fails the listing with
// BrokenListingError instead of handing a partial picture to a snapshot,
// verify or prune. The store here is an HTTP fake serving scripted pages.

import { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { BrokenListingError } from "../../lambdas/store/listing-check.ts";
import { compareKeys } from "../../lambdas/store/key-order.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { captureServerForTests } from "../support/capture-server.ts";

interface Page {
  readonly keys: string[];
  /** The token of the next page; a truncated page without one is a broken store. */
  readonly next?: string;
  readonly truncated?: boolean;
}

const capture = captureServerForTests();

const xmlText = (text: string) => text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

/** Serves page i for continuation token `t<i>` (the first page for none). */
function servePages(pages: Page[]): void {
  capture.server.responder = (request, res) => {
    const token = new URL(request.url, "http://x").searchParams.get("continuation-token");
    const page = pages[token ? Number(token.slice(1)) : 0] ?? { keys: [] };
    const truncated = page.truncated ?? page.next !== undefined;
    res.writeHead(200, { "content-type": "application/xml" });
    res.end(
      `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>` +
        `<KeyCount>${page.keys.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>${truncated}</IsTruncated>` +
        (page.next ? `<NextContinuationToken>${page.next}</NextContinuationToken>` : "") +
        page.keys.map((key) => `<Contents><Key>${xmlText(key)}</Key><Size>1</Size><ETag>"e"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>`).join("") +
        `</ListBucketResult>`,
    );
  };
}

function store(): S3Store {
  const client = new S3Client({
    region: "us-east-1",
    endpoint: capture.server.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: "a", secretAccessKey: "b" },
    maxAttempts: 1,
  });
  return new S3Store(client, "b");
}

async function listAll(): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of store().list("p/")) keys.push(info.key);
  return keys;
}

describe("S3Store.list checks what the store lists", () => {
  it("lists pages that follow S3's rules", async () => {
    servePages([{ keys: ["p/A", "p/B", "p/a"], next: "t1" }, { keys: ["p/b", "p/é", "p/😀"] }]);
    expect(await listAll()).toEqual(["p/A", "p/B", "p/a", "p/b", "p/é", "p/😀"]);
  });

  it("fails on a page sorted ignoring case (the emulator's old listing), naming the keys", async () => {
    servePages([{ keys: ["p/a", "p/B", "p/c"] }]);
    await expect(listAll()).rejects.toThrow(BrokenListingError);
    await expect(listAll()).rejects.toThrow('returned "p/B" after "p/a", out of byte order');
  });

  it("fails when the next page repeats a key of the last one", async () => {
    servePages([{ keys: ["p/a", "p/b"], next: "t1" }, { keys: ["p/b", "p/c"] }]);
    await expect(listAll()).rejects.toThrow("returned \"p/b\" twice");
  });

  it("fails when the next page starts before the end of the last one (keys between were skipped or repeat)", async () => {
    servePages([{ keys: ["p/a", "p/c"], next: "t1" }, { keys: ["p/b", "p/d"] }]);
    await expect(listAll()).rejects.toThrow(BrokenListingError);
  });

  it("fails when a truncated page gives no continuation token, and when a token comes back", async () => {
    servePages([{ keys: ["p/a"], truncated: true }]);
    await expect(listAll()).rejects.toThrow("a truncated page gave no continuation token");
    servePages([{ keys: ["p/a"], next: "t1" }, { keys: ["p/b"], next: "t1" }]);
    await expect(listAll()).rejects.toThrow("the same continuation token twice");
  });

  it("fails on a key outside the prefix", async () => {
    servePages([{ keys: ["p/a", "q/b"] }]);
    await expect(listAll()).rejects.toThrow('returned "q/b", outside the prefix');
  });
});

describe("compareKeys is S3's order", () => {
  it("orders like the keys' UTF-8 bytes, including characters above U+FFFF against U+E000-U+FFFF", () => {
    const units = ["a", "B", "/", "~", "é", "日", "\ud7ff", "\ue000", "\ufffd", "\uffff", "😀", "\u{10000}", "\u{10ffff}"];
    const keys = units.flatMap((x) => units.map((y) => x + y)).concat(units.map((x) => `${x}a`), [""]);
    const byBytes = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect([...keys].sort(compareKeys)).toEqual(byBytes);
    // Plain string comparison gets these wrong: the case the function exists for.
    expect("\ufffd" < "😀").toBe(false);
    expect(compareKeys("\ufffd", "😀")).toBeLessThan(0);
  });
});
