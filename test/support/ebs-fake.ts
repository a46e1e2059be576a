// A protocol-level fake of the EBS direct APIs (REST-JSON, as
// @aws-sdk/client-ebs speaks it) on 127.0.0.1. It checks what real EBS checks
// of a writer: 512 KiB blocks with their SHA-256, a completed parent, the
// count of changed blocks and the LINEAR aggregate checksum at completion,
// and block tokens on reads. Refusals are recorded, so a test can assert that
// the product sent nothing wrong. With `dir` its snapshots persist on disk
// (what `tidemark local` uses).

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";

export const EBS_BLOCK_SIZE = 512 * 1024;
const BLOCKS_PER_GIB = 2048;

export interface FakeEbsOptions {
  /** Where snapshots persist (metadata as JSON, blocks as files); in memory when absent. */
  readonly dir?: string;
  /** @default 0: any free port */
  readonly port?: number;
}

export interface FakeEbsSnapshot {
  readonly id: string;
  status: "pending" | "completed" | "error";
  /** GiB. */
  readonly volumeSize: number;
  readonly parentId?: string;
  readonly clientToken?: string;
  readonly tags: Record<string, string>;
  readonly description?: string;
  readonly kmsKeyArn?: string;
  readonly encrypted?: boolean;
  readonly startTime: Date;
  changedBlocksCount?: number;
  /** Block index -> SHA-256 (base64) of the blocks put in this snapshot itself (not its ancestors). */
  readonly putBlocks: Map<number, string>;
}

export interface FakeEbs {
  readonly endpoint: string;
  readonly snapshots: Map<string, FakeEbsSnapshot>;
  /** Requests the fake refused, with why. */
  readonly refused: string[];
  /** Calls by API name. */
  readonly calls: Map<string, number>;
  /** Runs before each PutSnapshotBlock is stored: a promise that never settles hangs the call (a Lambda frozen mid-upload), a throw answers 500. */
  beforePut?: (snapshotId: string, blockIndex: number) => Promise<void> | void;
  /** A snapshot's block, resolved through its parent chain; undefined when no snapshot of the chain wrote it (it reads as zeros). */
  readBlock(snapshotId: string, blockIndex: number): Buffer | undefined;
  stop(): Promise<void>;
}

class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  constructor(status: number, type: string, message: string) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const validation = (message: string) => new ApiError(400, "ValidationException", message);
const notFound = (message: string) => new ApiError(404, "ResourceNotFoundException", message);

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest();

interface StoredSnapshot {
  id: string;
  status: FakeEbsSnapshot["status"];
  volumeSize: number;
  parentId?: string;
  clientToken?: string;
  tags: Record<string, string>;
  description?: string;
  kmsKeyArn?: string;
  encrypted?: boolean;
  startTime: string;
  changedBlocksCount?: number;
  putBlocks: [number, string][];
}

/** Snapshots and blocks, in memory and (with a dir) on disk. */
class SnapshotStore {
  readonly snapshots = new Map<string, FakeEbsSnapshot>();
  readonly #blocks = new Map<string, Buffer>();
  readonly #dir: string | undefined;

  constructor(dir: string | undefined) {
    this.#dir = dir;
    if (!dir) return;
    mkdirSync(join(dir, "blocks"), { recursive: true });
    for (const name of readdirSync(dir).filter((n) => n.endsWith(".json"))) {
      const stored = JSON.parse(readFileSync(join(dir, name), "utf8")) as StoredSnapshot;
      const { putBlocks, startTime, ...rest } = stored;
      this.snapshots.set(stored.id, { ...rest, startTime: new Date(startTime), putBlocks: new Map(putBlocks) });
    }
  }

  save(snapshot: FakeEbsSnapshot): void {
    if (!this.#dir) return;
    const stored: StoredSnapshot = { ...snapshot, startTime: snapshot.startTime.toISOString(), putBlocks: [...snapshot.putBlocks.entries()] };
    const file = join(this.#dir, `${snapshot.id}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(stored));
    renameSync(`${file}.tmp`, file);
  }

  putBlock(snapshotId: string, index: number, data: Buffer): void {
    const key = `${snapshotId}.${index}`;
    if (this.#dir) writeFileSync(join(this.#dir, "blocks", key), data);
    else this.#blocks.set(key, data);
  }

  block(snapshotId: string, index: number): Buffer | undefined {
    const key = `${snapshotId}.${index}`;
    if (!this.#dir) return this.#blocks.get(key);
    try {
      return readFileSync(join(this.#dir, "blocks", key));
    } catch {
      return undefined;
    }
  }

  /** The snapshot in the chain (this one, then its ancestors) that wrote the block last. */
  owner(snapshotId: string, index: number): FakeEbsSnapshot | undefined {
    for (let s = this.snapshots.get(snapshotId); s; s = s.parentId ? this.snapshots.get(s.parentId) : undefined) {
      if (s.putBlocks.has(index)) return s;
    }
    return undefined;
  }

  /** Every block written in the chain, with the snapshot that wrote it last. */
  chainBlocks(snapshotId: string): Map<number, FakeEbsSnapshot> {
    const chain: FakeEbsSnapshot[] = [];
    for (let s = this.snapshots.get(snapshotId); s; s = s.parentId ? this.snapshots.get(s.parentId) : undefined) chain.unshift(s);
    const out = new Map<number, FakeEbsSnapshot>();
    for (const s of chain) for (const index of s.putBlocks.keys()) out.set(index, s);
    return out;
  }
}

/** A block token names the block's owner snapshot and index: it is valid only for that block. */
function blockToken(owner: string, index: number): string {
  return Buffer.from(`${owner}:${index}`).toString("base64url");
}

function page<T>(items: T[], url: URL): { items: T[]; next?: string } {
  const max = Math.min(10_000, Math.max(100, Number(url.searchParams.get("maxResults") ?? "10000")));
  const from = Number(url.searchParams.get("pageToken") ?? "0");
  const next = from + max < items.length ? String(from + max) : undefined;
  return { items: items.slice(from, from + max), ...(next ? { next } : {}) };
}

export async function startFakeEbs(options: FakeEbsOptions = {}): Promise<FakeEbs> {
  const store = new SnapshotStore(options.dir);
  const refused: string[] = [];
  const calls = new Map<string, number>();
  const sockets = new Set<Socket>();
  const count = (api: string) => calls.set(api, (calls.get(api) ?? 0) + 1);

  const snapshotOf = (id: string): FakeEbsSnapshot => {
    const snapshot = store.snapshots.get(id);
    if (!snapshot) throw notFound(`snapshot ${id} does not exist`);
    return snapshot;
  };

  const startSnapshot = async (req: IncomingMessage): Promise<[number, unknown]> => {
    count("StartSnapshot");
    const body = JSON.parse((await readBody(req)).toString("utf8") || "{}") as {
      VolumeSize?: number;
      ParentSnapshotId?: string;
      ClientToken?: string;
      Tags?: { Key?: string; Value?: string }[];
      Description?: string;
      Encrypted?: boolean;
      KmsKeyArn?: string;
    };
    const size = body.VolumeSize;
    if (!Number.isInteger(size) || size === undefined || size < 1 || size > 65_536) throw validation(`VolumeSize must be 1-65536 GiB, got ${String(size)}`);
    const tags = Object.fromEntries((body.Tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
    if (body.ClientToken) {
      const earlier = [...store.snapshots.values()].find((s) => s.clientToken === body.ClientToken);
      if (earlier) {
        if (earlier.volumeSize !== size || earlier.parentId !== body.ParentSnapshotId) {
          throw new ApiError(409, "ConflictException", `client token ${body.ClientToken} was used with other parameters`);
        }
        return [201, describe(earlier)];
      }
    }
    if (body.ParentSnapshotId !== undefined) {
      const parent = snapshotOf(body.ParentSnapshotId);
      if (parent.status !== "completed") throw validation(`parent snapshot ${parent.id} is ${parent.status}, not completed`);
      if (parent.volumeSize > size) throw validation(`VolumeSize ${size} is smaller than the parent's ${parent.volumeSize}`);
    }
    const snapshot: FakeEbsSnapshot = {
      id: `snap-${randomBytes(9).toString("hex").slice(0, 17)}`,
      status: "pending",
      volumeSize: size,
      tags,
      startTime: new Date(),
      putBlocks: new Map(),
      ...(body.ParentSnapshotId !== undefined ? { parentId: body.ParentSnapshotId } : {}),
      ...(body.ClientToken ? { clientToken: body.ClientToken } : {}),
      ...(body.Description !== undefined ? { description: body.Description } : {}),
      ...(body.KmsKeyArn !== undefined ? { kmsKeyArn: body.KmsKeyArn } : {}),
      ...(body.Encrypted !== undefined ? { encrypted: body.Encrypted } : {}),
    };
    store.snapshots.set(snapshot.id, snapshot);
    store.save(snapshot);
    return [201, describe(snapshot)];
  };

  const describe = (s: FakeEbsSnapshot) => ({
    SnapshotId: s.id,
    OwnerId: "000000000000",
    Status: s.status,
    StartTime: s.startTime.getTime() / 1000,
    VolumeSize: s.volumeSize,
    BlockSize: EBS_BLOCK_SIZE,
    Tags: Object.entries(s.tags).map(([Key, Value]) => ({ Key, Value })),
    ...(s.parentId ? { ParentSnapshotId: s.parentId } : {}),
    ...(s.description !== undefined ? { Description: s.description } : {}),
    ...(s.kmsKeyArn ? { KmsKeyArn: s.kmsKeyArn } : {}),
  });

  const putBlock = async (req: IncomingMessage, id: string, index: number, res: ServerResponse): Promise<[number, unknown]> => {
    count("PutSnapshotBlock");
    const data = await readBody(req);
    const snapshot = snapshotOf(id);
    if (snapshot.status !== "pending") throw validation(`snapshot ${id} is ${snapshot.status}: blocks go only into a pending snapshot`);
    if (!Number.isInteger(index) || index < 0 || index >= snapshot.volumeSize * BLOCKS_PER_GIB) throw validation(`block index ${index} is outside a ${snapshot.volumeSize} GiB volume`);
    const length = Number(req.headers["x-amz-data-length"]);
    if (length !== EBS_BLOCK_SIZE || data.length !== EBS_BLOCK_SIZE) throw validation(`a block is ${EBS_BLOCK_SIZE} bytes; DataLength ${length}, body ${data.length}`);
    if (req.headers["x-amz-checksum-algorithm"] !== "SHA256") throw validation("ChecksumAlgorithm must be SHA256");
    const checksum = sha256(data).toString("base64");
    if (req.headers["x-amz-checksum"] !== checksum) throw validation(`block ${index}: Checksum does not match the data`);
    await fake.beforePut?.(id, index);
    store.putBlock(id, index, data);
    snapshot.putBlocks.set(index, checksum);
    store.save(snapshot);
    res.setHeader("x-amz-Checksum", checksum);
    res.setHeader("x-amz-Checksum-Algorithm", "SHA256");
    return [201, {}];
  };

  const complete = (req: IncomingMessage, id: string): [number, unknown] => {
    count("CompleteSnapshot");
    const snapshot = snapshotOf(id);
    if (snapshot.status !== "pending") throw validation(`snapshot ${id} is ${snapshot.status}`);
    const changed = Number(req.headers["x-amz-changedblockscount"]);
    if (changed !== snapshot.putBlocks.size) throw validation(`ChangedBlocksCount ${String(req.headers["x-amz-changedblockscount"])} but ${snapshot.putBlocks.size} blocks were put`);
    const checksum = req.headers["x-amz-checksum"];
    if (checksum !== undefined) {
      if (req.headers["x-amz-checksum-algorithm"] !== "SHA256" || req.headers["x-amz-checksum-aggregation-method"] !== "LINEAR") {
        throw validation("an aggregate checksum needs ChecksumAlgorithm SHA256 and ChecksumAggregationMethod LINEAR");
      }
      const digests = [...snapshot.putBlocks.entries()].sort((a, b) => a[0] - b[0]).map(([, b64]) => Buffer.from(b64, "base64"));
      if (sha256(Buffer.concat(digests)).toString("base64") !== checksum) throw validation("the LINEAR aggregate checksum does not match the blocks put");
    }
    snapshot.status = "completed";
    snapshot.changedBlocksCount = changed;
    store.save(snapshot);
    return [202, { Status: "completed" }];
  };

  const completedSnapshot = (id: string): FakeEbsSnapshot => {
    const snapshot = snapshotOf(id);
    if (snapshot.status !== "completed") throw validation(`snapshot ${id} is ${snapshot.status}: only completed snapshots can be read`);
    return snapshot;
  };

  const listBlocks = (id: string, url: URL): [number, unknown] => {
    count("ListSnapshotBlocks");
    const snapshot = completedSnapshot(id);
    const start = Number(url.searchParams.get("startingBlockIndex") ?? "0");
    const blocks = [...store.chainBlocks(id).entries()].filter(([index]) => index >= start).sort((a, b) => a[0] - b[0]);
    const { items, next } = page(blocks, url);
    return [200, {
      Blocks: items.map(([index, owner]) => ({ BlockIndex: index, BlockToken: blockToken(owner.id, index) })),
      VolumeSize: snapshot.volumeSize,
      BlockSize: EBS_BLOCK_SIZE,
      ExpiryTime: Date.now() / 1000 + 3600,
      ...(next ? { NextToken: next } : {}),
    }];
  };

  const listChanged = (id: string, url: URL): [number, unknown] => {
    count("ListChangedBlocks");
    const second = completedSnapshot(id);
    const firstId = url.searchParams.get("firstSnapshotId");
    const after = store.chainBlocks(id);
    const before = firstId ? (completedSnapshot(firstId), store.chainBlocks(firstId)) : new Map<number, FakeEbsSnapshot>();
    const changed = [...new Set([...after.keys(), ...before.keys()])]
      .filter((index) => after.get(index)?.id !== before.get(index)?.id)
      .sort((a, b) => a - b);
    const { items, next } = page(changed, url);
    return [200, {
      ChangedBlocks: items.map((index) => {
        const first = before.get(index);
        const secondOwner = after.get(index);
        return { BlockIndex: index, ...(first ? { FirstBlockToken: blockToken(first.id, index) } : {}), ...(secondOwner ? { SecondBlockToken: blockToken(secondOwner.id, index) } : {}) };
      }),
      VolumeSize: second.volumeSize,
      BlockSize: EBS_BLOCK_SIZE,
      ExpiryTime: Date.now() / 1000 + 3600,
      ...(next ? { NextToken: next } : {}),
    }];
  };

  const getBlock = (id: string, index: number, url: URL, res: ServerResponse): void => {
    count("GetSnapshotBlock");
    completedSnapshot(id);
    const owner = store.owner(id, index);
    const token = url.searchParams.get("blockToken");
    if (!owner || token !== blockToken(owner.id, index)) throw validation(`block ${index} of ${id}: the block token is not one a listing handed out`);
    const data = store.block(owner.id, index);
    if (!data) throw notFound(`block ${index} of ${owner.id} is gone`);
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "x-amz-Data-Length": String(data.length),
      "x-amz-Checksum": sha256(data).toString("base64"),
      "x-amz-Checksum-Algorithm": "SHA256",
    });
    res.end(data);
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<[number, unknown] | undefined> => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    if (!req.headers.authorization) throw new ApiError(403, "AccessDeniedException", "the request is not signed");
    const [root, id, sub, index] = parts;
    if (root !== "snapshots") throw notFound(`no API at ${req.method ?? ""} ${url.pathname}`);
    if (req.method === "POST" && parts.length === 1) return startSnapshot(req);
    if (req.method === "POST" && id === "completion" && sub !== undefined && parts.length === 3) return complete(req, sub);
    if (id === undefined) throw notFound(`no API at ${req.method ?? ""} ${url.pathname}`);
    if (sub === "blocks" && index !== undefined && parts.length === 4) {
      if (req.method === "PUT") return putBlock(req, id, Number(index), res);
      if (req.method === "GET") {
        getBlock(id, Number(index), url, res);
        return undefined;
      }
    }
    if (req.method === "GET" && sub === "blocks" && parts.length === 3) return listBlocks(id, url);
    if (req.method === "GET" && sub === "changedblocks" && parts.length === 3) return listChanged(id, url);
    throw notFound(`no API at ${req.method ?? ""} ${url.pathname}`);
  };

  const server = createServer((req, res) => {
    route(req, res).then(
      (answer) => {
        if (!answer) return;
        const [status, body] = answer;
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      },
      (error: unknown) => {
        const api = error instanceof ApiError ? error : new ApiError(500, "InternalServerException", error instanceof Error ? error.message : String(error));
        refused.push(`${req.method ?? ""} ${req.url ?? ""}: ${api.type}: ${api.message}`);
        if (res.headersSent) return res.destroy();
        res.writeHead(api.status, { "content-type": "application/json", "x-amzn-ErrorType": api.type });
        res.end(JSON.stringify({ message: api.message, Message: api.message }));
      },
    );
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const fake: FakeEbs = {
    endpoint: `http://127.0.0.1:${port}`,
    snapshots: store.snapshots,
    refused,
    calls,
    readBlock(snapshotId, blockIndex) {
      const owner = store.owner(snapshotId, blockIndex);
      return owner ? store.block(owner.id, blockIndex) : undefined;
    },
    async stop() {
      // Hung calls (a test's frozen Lambda) must not keep the server open.
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}
