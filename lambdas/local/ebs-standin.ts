// The local cloud's stand-in for the EBS direct APIs: a protocol-level fake, spoken as @aws-sdk/client-ebs
// speaks them (REST-JSON, SigV4-signed) on 127.0.0.1. No emulator covers these
// APIs and this fake is what proves the product's requests right, so it checks
// what real EBS checks: the Smithy model's constraints, 512 KiB blocks with
// their SHA-256, a completed parent and no encryption settings beside it, the
// changed-block count and LINEAR aggregate at completion, block and page
// tokens on reads, and the pending snapshot's Timeout. Every refusal is
// recorded with why. With `dir` the snapshots persist (`tidemark local`).
// The same endpoint answers EC2's LockSnapshot (Query protocol, signed for
// ec2), the one EC2 call tidemark makes on the snapshots it cut.

import { createHash, randomBytes, randomUUID } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { join } from "node:path";

export const EBS_BLOCK_SIZE = 512 * 1024;
const BLOCKS_PER_GIB = (1024 * 1024 * 1024) / EBS_BLOCK_SIZE;
const MAX_VOLUME_GIB = 65_536;
const OWNER_ID = "000000000000";
const DEFAULT_TIMEOUT_MINUTES = 60;
const SNAPSHOT_ID = /^snap-[0-9a-f]+$/;
const BASE64 = /^[A-Za-z0-9+/=]+$/;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:.*:[0-9]{12}:key\//;

export interface FakeEbsOptions {
  /** Where snapshots persist (one JSON file per snapshot + block files); in memory when absent. */
  readonly dir?: string;
  /** Port; 0 = any free one. @default 0 */
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
  /** The key named at the start, or the parent's. */
  readonly kmsKeyArn?: string;
  /** Asked for at the start, or inherited from the parent. */
  readonly encrypted: boolean;
  readonly description?: string;
  readonly startTime: Date;
  /** Minutes a pending snapshot may go without a block put before EBS cancels it (StartSnapshot's Timeout). */
  readonly timeout: number;
  /** The start, or the last block put: the pending Timeout counts from here. */
  lastWriteTime: Date;
  changedBlocksCount?: number;
  /** Block index -> SHA-256 (base64) of the blocks put in this snapshot itself (not its ancestors). */
  readonly putBlocks: Map<number, string>;
  /** Its EC2 snapshot lock, once LockSnapshot locked it. */
  lock?: FakeSnapshotLock;
}

/** A snapshot lock as EC2 keeps it; times are ISO 8601 (they persist as they are). */
export interface FakeSnapshotLock {
  readonly mode: "governance" | "compliance";
  readonly createdOn: string;
  /** Asked for as LockDuration: counted from when the snapshot completes. */
  readonly durationDays?: number;
  durationStartTime?: string;
  /** Unknown for a duration lock of a snapshot still pending. */
  expiresOn?: string;
  readonly coolOffHours?: number;
  readonly coolOffExpiresOn?: string;
}

export interface FakeEbs {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly snapshots: Map<string, FakeEbsSnapshot>;
  /** Requests the fake refused, with why (a test asserts this stays empty when the client is correct). */
  readonly refused: string[];
  /** Counts of calls by API name (StartSnapshot, PutSnapshotBlock, ...). */
  readonly calls: Map<string, number>;
  /** Test hook: called before each PutSnapshotBlock is stored; a promise that never settles hangs the call (a Lambda frozen mid-upload), a throw answers 500. */
  beforePut?: (snapshotId: string, blockIndex: number) => Promise<void> | void;
  /** The full content of a snapshot's block, resolved through its parent chain; undefined when no snapshot of the chain wrote it (it reads as zeros). */
  readBlock(snapshotId: string, blockIndex: number): Buffer | undefined;
  stop(): Promise<void>;
}

type ErrorType = "ValidationException" | "ResourceNotFoundException" | "ConflictException" | "AccessDeniedException" | "InternalServerException" | "UnknownOperationException";

/** An error answer as EBS gives it: the type in x-amzn-ErrorType, Message and Reason in the body. */
class ApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly reason: string | undefined;
  constructor(status: number, type: ErrorType, message: string, reason?: string) {
    super(message);
    this.status = status;
    this.type = type;
    this.reason = reason;
  }
}

/** An error answer as EC2's Query API gives it: XML with a Code and a Message. */
class Ec2Error extends Error {
  readonly status: number;
  readonly code: string;
  constructor(code: string, message: string, status = 400) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const EC2_API_VERSION = "2016-11-15";
const EC2_XMLNS = `http://ec2.amazonaws.com/doc/${EC2_API_VERSION}/`;
const MAX_LOCK_DAYS = 36_500;
const MAX_COOL_OFF_HOURS = 72;

const xmlEscape = (text: string) => text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c] ?? c);

/** EC2's lockState: compliance-cooloff while the cooling-off period runs, expired once the lock ended. */
function lockState(lock: FakeSnapshotLock, now: number): string {
  if (lock.expiresOn !== undefined && Date.parse(lock.expiresOn) <= now) return "expired";
  if (lock.mode === "compliance" && lock.coolOffExpiresOn !== undefined && Date.parse(lock.coolOffExpiresOn) > now) return "compliance-cooloff";
  return lock.mode;
}

/** A failure the test asked for through beforePut: answered as a 500, but the client did nothing wrong. */
class InjectedFailure extends ApiError {}

/** The client went away mid-request: nothing to answer, nothing it did wrong. */
class ClientGone extends Error {}

const invalid = (reason: string, message: string) => new ApiError(400, "ValidationException", message, reason);
const notFound = (id: string) => new ApiError(404, "ResourceNotFoundException", `snapshot ${id} does not exist`, "SNAPSHOT_NOT_FOUND");

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest();

/** LINEAR: the SHA-256 of the blocks' raw SHA-256 digests, concatenated in ascending block index order. */
function linearAggregate(blocks: Map<number, string>): string {
  const digests = [...blocks.entries()].sort((a, b) => a[0] - b[0]).map(([, checksum]) => Buffer.from(checksum, "base64"));
  return sha256(Buffer.concat(digests)).toString("base64");
}

// ---- reading requests

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", () => reject(new ClientGone()));
    req.on("close", () => {
      if (!req.complete) reject(new ClientGone());
    });
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** A header, query or label that holds an integer (the SDK writes them in decimal). */
function integerText(text: string | null | undefined, what: string): number | undefined {
  if (text === undefined || text === null) return undefined;
  if (!/^-?\d+$/.test(text)) throw invalid("INVALID_PARAMETER_VALUE", `${what} must be an integer, got "${text}"`);
  return Number(text);
}

function inRange(value: number | undefined, min: number, max: number, what: string, reason = "INVALID_PARAMETER_VALUE"): void {
  if (value !== undefined && (value < min || value > max)) throw invalid(reason, `${what} must be ${min} to ${max}, got ${value}`);
}

function jsonObject(body: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = body.length === 0 ? {} : JSON.parse(body.toString("utf8"));
  } catch {
    throw invalid("INVALID_PARAMETER_VALUE", "the body is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid("INVALID_PARAMETER_VALUE", "the body is not a JSON object");
  return Object.fromEntries(Object.entries(value));
}

function stringField(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value !== undefined && typeof value !== "string") throw invalid("INVALID_PARAMETER_VALUE", `${key} must be a string`);
  return value;
}

function integerField(body: Record<string, unknown>, key: string): number | undefined {
  const value = body[key];
  if (value !== undefined && !Number.isInteger(value)) throw invalid("INVALID_PARAMETER_VALUE", `${key} must be an integer`);
  return typeof value === "number" ? value : undefined;
}

function booleanField(body: Record<string, unknown>, key: string): boolean | undefined {
  const value = body[key];
  if (value !== undefined && typeof value !== "boolean") throw invalid("INVALID_PARAMETER_VALUE", `${key} must be a boolean`);
  return value;
}

function snapshotIdText(id: string, what = "SnapshotId"): string {
  if (id.length > 64 || !SNAPSHOT_ID.test(id)) throw invalid("INVALID_SNAPSHOT_ID", `${what} "${id}" is not a snapshot id`);
  return id;
}

// ---- StartSnapshot's parameters

interface StartRequest {
  readonly volumeSize: number;
  readonly parentId?: string;
  readonly tags: Record<string, string>;
  readonly description?: string;
  readonly clientToken?: string;
  readonly encrypted?: boolean;
  readonly kmsKeyArn?: string;
  readonly timeout: number;
}

function parseTags(value: unknown): Record<string, string> {
  if (value === undefined) return {};
  if (!Array.isArray(value)) throw invalid("INVALID_TAG", "Tags must be a list");
  if (value.length > 50) throw invalid("INVALID_TAG", `at most 50 tags, got ${value.length}`);
  const tags: Record<string, string> = {};
  for (const item of value) {
    const tag = typeof item === "object" && item !== null ? Object.fromEntries(Object.entries(item)) : {};
    const key = tag.Key;
    const text = tag.Value ?? "";
    if (typeof key !== "string" || key.length < 1 || key.length > 127) throw invalid("INVALID_TAG", `a tag key must be 1 to 127 characters, got ${JSON.stringify(key)}`);
    if (typeof text !== "string" || text.length > 255) throw invalid("INVALID_TAG", `tag ${key}: a value must be a string of at most 255 characters`);
    if (key.toLowerCase().startsWith("aws:")) throw invalid("INVALID_TAG", `tag keys starting with aws: are reserved (${key})`);
    if (key in tags) throw invalid("INVALID_TAG", `tag ${key} is given twice`);
    tags[key] = text;
  }
  return tags;
}

/** The request's parameters, checked as the model and the encryption rules want; the parent's state is checked later. */
function parseStart(body: Record<string, unknown>): StartRequest {
  const volumeSize = integerField(body, "VolumeSize");
  if (volumeSize === undefined) throw invalid("INVALID_VOLUME_SIZE", "VolumeSize is required");
  inRange(volumeSize, 1, MAX_VOLUME_GIB, "VolumeSize (GiB)", "INVALID_VOLUME_SIZE");
  const timeout = integerField(body, "Timeout") ?? DEFAULT_TIMEOUT_MINUTES;
  inRange(timeout, 10, 4320, "Timeout (minutes)");
  const parentId = stringField(body, "ParentSnapshotId");
  if (parentId !== undefined) snapshotIdText(parentId, "ParentSnapshotId");
  const description = stringField(body, "Description");
  if (description !== undefined && description.length > 255) throw invalid("INVALID_PARAMETER_VALUE", `Description is ${description.length} characters, at most 255`);
  // The user guide: "any string that includes up to 64 ASCII characters".
  const clientToken = stringField(body, "ClientToken");
  if (clientToken !== undefined && !/^[!-~]{1,64}$/.test(clientToken)) throw invalid("INVALID_PARAMETER_VALUE", `ClientToken must be 1 to 64 printable ASCII characters`);
  const encrypted = booleanField(body, "Encrypted");
  const kmsKeyArn = stringField(body, "KmsKeyArn");
  if (kmsKeyArn !== undefined && (kmsKeyArn.length > 2048 || !KMS_KEY_ARN.test(kmsKeyArn))) throw invalid("INVALID_PARAMETER_VALUE", `KmsKeyArn ${kmsKeyArn} is not a KMS key ARN`);
  // The encryption outcomes: a child takes its parent's encryption and key, and names neither itself.
  if (parentId !== undefined && encrypted !== undefined) throw invalid("INVALID_PARAMETER_VALUE", "ParentSnapshotId and Encrypted cannot be given together");
  if (parentId !== undefined && kmsKeyArn !== undefined) throw invalid("INVALID_PARAMETER_VALUE", "ParentSnapshotId and KmsKeyArn cannot be given together: a child is encrypted as its parent is");
  if (parentId === undefined && kmsKeyArn !== undefined && encrypted !== true) throw invalid("INVALID_PARAMETER_VALUE", "KmsKeyArn needs Encrypted true");
  return { volumeSize, timeout, tags: parseTags(body.Tags), parentId, description, clientToken, encrypted, kmsKeyArn };
}

/** What a client token stands for: the same token with other parameters is a conflict. */
function requestKey(request: StartRequest): string {
  const { clientToken: _token, tags, ...rest } = request;
  return JSON.stringify({ ...rest, tags: Object.entries(tags).sort(([a], [b]) => a.localeCompare(b)) });
}

// ---- tokens

/** A block token names the snapshot that wrote the block and the index, in base64 as the model's pattern wants: it reads that block only. */
const blockToken = (ownerId: string, index: number) => Buffer.from(`block ${ownerId} ${index}`).toString("base64");

/** A page token names the listing it continues and the block index the next page starts at. */
const pageToken = (listing: string, next: number) => Buffer.from(`page ${listing} ${next}`).toString("base64");

function pageStart(token: string, listing: string): number {
  const match = BASE64.test(token) ? /^page (\S+) (\d+)$/.exec(Buffer.from(token, "base64").toString("utf8")) : null;
  if (!match || match[1] !== listing) throw invalid("INVALID_PAGE_TOKEN", "the page token is not one this listing handed out");
  return Number(match[2]);
}

interface ListQuery {
  readonly maxResults: number;
  readonly start: number;
}

/** maxResults (100 to 10,000), and where the page starts: the page token's index, else startingBlockIndex. */
function listQuery(url: URL, listing: string): ListQuery {
  const maxResults = integerText(url.searchParams.get("maxResults"), "maxResults") ?? 10_000;
  inRange(maxResults, 100, 10_000, "maxResults");
  const token = url.searchParams.get("pageToken");
  const startingBlockIndex = integerText(url.searchParams.get("startingBlockIndex"), "startingBlockIndex") ?? 0;
  inRange(startingBlockIndex, 0, Number.MAX_SAFE_INTEGER, "startingBlockIndex");
  return { maxResults, start: token !== null ? pageStart(token, listing) : startingBlockIndex };
}

function page(indexes: number[], query: ListQuery, listing: string): { indexes: number[]; nextToken?: string } {
  const from = indexes.filter((index) => index >= query.start).sort((a, b) => a - b);
  const next = from[query.maxResults];
  return { indexes: from.slice(0, query.maxResults), ...(next !== undefined ? { nextToken: pageToken(listing, next) } : {}) };
}

// ---- storage

/** A snapshot's metadata file: written at the start and at the end; the blocks put in between go to a journal. */
interface StoredSnapshot {
  readonly id: string;
  readonly status: FakeEbsSnapshot["status"];
  readonly volumeSize: number;
  readonly parentId?: string;
  readonly clientToken?: string;
  readonly tags: Record<string, string>;
  readonly kmsKeyArn?: string;
  readonly encrypted?: boolean;
  readonly description?: string;
  readonly startTime: string;
  readonly timeout?: number;
  readonly lastWriteTime?: string;
  readonly changedBlocksCount?: number;
  readonly putBlocks: [number, string][];
  readonly request?: string;
}

function writeAtomically(file: string, data: string | Buffer): void {
  writeFileSync(`${file}.tmp`, data);
  renameSync(`${file}.tmp`, file);
}

/** The journal's lines, "<index> <checksum>"; a line torn by a crash is left out, as its put was never answered. */
function readJournal(file: string): [number, string][] {
  return readFileSync(file, "utf8")
    .split("\n")
    .map((line) => /^(\d+) ([A-Za-z0-9+/=]{44})$/.exec(line))
    .filter((match) => match !== null)
    .map((match) => [Number(match[1]), String(match[2])]);
}

/**
 * Snapshots and their blocks, in memory and, with a dir, on disk: `<id>.json`
 * (metadata), `<id>.puts` (blocks put since it was written) and `blocks/<id>.<index>`.
 */
class SnapshotStore {
  readonly snapshots = new Map<string, FakeEbsSnapshot>();
  /** StartSnapshot's parameters by snapshot, for client tokens. */
  readonly #requests = new Map<string, string>();
  readonly #blocks = new Map<string, Buffer>();
  readonly #dir: string | undefined;

  constructor(dir: string | undefined) {
    this.#dir = dir;
    if (!dir) return;
    mkdirSync(join(dir, "blocks"), { recursive: true });
    for (const name of readdirSync(dir).filter((n) => n.endsWith(".json"))) this.#load(join(dir, name));
  }

  #load(file: string): void {
    const { putBlocks, startTime, lastWriteTime, timeout, encrypted, request, ...rest } = JSON.parse(readFileSync(file, "utf8")) as StoredSnapshot;
    const snapshot: FakeEbsSnapshot = {
      ...rest,
      startTime: new Date(startTime),
      lastWriteTime: new Date(lastWriteTime ?? startTime),
      timeout: timeout ?? DEFAULT_TIMEOUT_MINUTES,
      encrypted: encrypted ?? false,
      putBlocks: new Map(putBlocks),
    };
    const journal = this.#journal(snapshot.id);
    if (journal && existsSync(journal)) {
      for (const [index, checksum] of readJournal(journal)) snapshot.putBlocks.set(index, checksum);
      // The journal was last written by the last put: the pending Timeout counts from there.
      snapshot.lastWriteTime = statSync(journal).mtime;
    }
    this.snapshots.set(snapshot.id, snapshot);
    if (request !== undefined) this.#requests.set(snapshot.id, request);
  }

  #journal(id: string): string | undefined {
    return this.#dir ? join(this.#dir, `${id}.puts`) : undefined;
  }

  #blockFile(id: string, index: number): string | undefined {
    return this.#dir ? join(this.#dir, "blocks", `${id}.${index}`) : undefined;
  }

  add(snapshot: FakeEbsSnapshot, request: string): void {
    this.snapshots.set(snapshot.id, snapshot);
    this.#requests.set(snapshot.id, request);
    this.save(snapshot);
  }

  /** The snapshot a client token started, with the parameters it was started with. */
  byToken(token: string): { snapshot: FakeEbsSnapshot; request: string | undefined } | undefined {
    for (const snapshot of this.snapshots.values()) {
      if (snapshot.clientToken === token) return { snapshot, request: this.#requests.get(snapshot.id) };
    }
    return undefined;
  }

  /** Rewrites the metadata, which then holds every block put so far: the journal goes. */
  save(snapshot: FakeEbsSnapshot): void {
    if (!this.#dir) return;
    const stored: StoredSnapshot = {
      ...snapshot,
      startTime: snapshot.startTime.toISOString(),
      lastWriteTime: snapshot.lastWriteTime.toISOString(),
      putBlocks: [...snapshot.putBlocks.entries()],
      request: this.#requests.get(snapshot.id),
    };
    writeAtomically(join(this.#dir, `${snapshot.id}.json`), JSON.stringify(stored));
    rmSync(join(this.#dir, `${snapshot.id}.puts`), { force: true });
  }

  putBlock(snapshot: FakeEbsSnapshot, index: number, data: Buffer, checksum: string): void {
    const file = this.#blockFile(snapshot.id, index);
    const journal = this.#journal(snapshot.id);
    if (file && journal) {
      writeAtomically(file, data);
      // A line per block rather than the whole metadata again: a snapshot of many blocks stays linear to write.
      appendFileSync(journal, `${index} ${checksum}\n`);
    } else this.#blocks.set(`${snapshot.id}.${index}`, data);
    snapshot.putBlocks.set(index, checksum);
    snapshot.lastWriteTime = new Date();
  }

  data(id: string, index: number): Buffer | undefined {
    const file = this.#blockFile(id, index);
    if (!file) return this.#blocks.get(`${id}.${index}`);
    return existsSync(file) ? readFileSync(file) : undefined;
  }

  /** The snapshot and its ancestors, newest first. */
  lineage(id: string): FakeEbsSnapshot[] {
    const chain: FakeEbsSnapshot[] = [];
    for (let s = this.snapshots.get(id); s; s = s.parentId !== undefined ? this.snapshots.get(s.parentId) : undefined) chain.push(s);
    return chain;
  }

  /** Every block written in the lineage, with the snapshot that wrote it last. */
  owners(id: string): Map<number, FakeEbsSnapshot> {
    const owners = new Map<number, FakeEbsSnapshot>();
    for (const s of this.lineage(id).reverse()) for (const index of s.putBlocks.keys()) owners.set(index, s);
    return owners;
  }

  owner(id: string, index: number): FakeEbsSnapshot | undefined {
    return this.lineage(id).find((s) => s.putBlocks.has(index));
  }
}

// ---- the server

interface ApiRequest {
  readonly req: IncomingMessage;
  readonly url: URL;
  readonly body: Buffer;
  /** The path's labels, decoded: snapshot id, block index. */
  readonly labels: string[];
}

interface Answer {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly json?: unknown;
  /** An EC2 Query answer. */
  readonly xml?: string;
  readonly data?: Buffer;
}

interface Route {
  readonly api: string;
  /** The service the request must be signed for, and whose error format it gets. @default "ebs" */
  readonly service?: "ebs" | "ec2";
  readonly method: string;
  readonly path: RegExp;
  readonly handle: (request: ApiRequest) => Answer | Promise<Answer>;
}

function send(res: ServerResponse, answer: Answer): void {
  const headers = { "x-amzn-RequestId": randomUUID(), ...answer.headers };
  if (answer.data) {
    res.writeHead(answer.status, { "content-type": "application/octet-stream", "content-length": String(answer.data.length), ...headers });
    res.end(answer.data);
  } else if (answer.xml !== undefined) {
    res.writeHead(answer.status, { "content-type": "text/xml;charset=UTF-8", ...headers });
    res.end(answer.xml);
  } else if (answer.json !== undefined) {
    res.writeHead(answer.status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(answer.json));
  } else {
    res.writeHead(answer.status, headers);
    res.end();
  }
}

/** Signatures are not verified, but a request must be SigV4-signed, and for the service it calls. */
function checkSigned(req: IncomingMessage, service: "ebs" | "ec2"): void {
  const authorization = header(req, "authorization") ?? "";
  if (!new RegExp(`^AWS4-HMAC-SHA256 Credential=[^/]+/\\d{8}/[^/]+/${service}/aws4_request,`).test(authorization)) {
    if (service === "ec2") throw new Ec2Error("AuthFailure", "the request is not SigV4-signed for the ec2 service", 401);
    throw new ApiError(403, "AccessDeniedException", "the request is not SigV4-signed for the ebs service", "UNAUTHORIZED_ACCOUNT");
  }
}

export async function startFakeEbs(options: FakeEbsOptions = {}): Promise<FakeEbs> {
  const store = new SnapshotStore(options.dir);
  const refused: string[] = [];
  const calls = new Map<string, number>();

  /** EBS cancels a pending snapshot that has had no block put for its Timeout. */
  const expireIfIdle = (snapshot: FakeEbsSnapshot) => {
    if (snapshot.status === "pending" && Date.now() - snapshot.lastWriteTime.getTime() > snapshot.timeout * 60_000) {
      snapshot.status = "error";
      store.save(snapshot);
    }
  };

  const snapshotOf = (id: string): FakeEbsSnapshot => {
    const snapshot = store.snapshots.get(snapshotIdText(id));
    if (!snapshot) throw notFound(id);
    expireIfIdle(snapshot);
    return snapshot;
  };

  const inState = (id: string, status: FakeEbsSnapshot["status"], why: string): FakeEbsSnapshot => {
    const snapshot = snapshotOf(id);
    if (snapshot.status !== status) throw invalid("INVALID_SNAPSHOT_ID", `snapshot ${id} is ${snapshot.status}: ${why}`);
    return snapshot;
  };
  const pending = (id: string) => inState(id, "pending", "blocks go only into a pending snapshot, and only it can be completed");
  const completed = (id: string) => inState(id, "completed", "only a completed snapshot can be read");

  const blockIndex = (text: string, snapshot: FakeEbsSnapshot): number => {
    const index = integerText(text, "BlockIndex") ?? 0;
    inRange(index, 0, snapshot.volumeSize * BLOCKS_PER_GIB - 1, `BlockIndex of a ${snapshot.volumeSize} GiB volume`, "INVALID_BLOCK");
    return index;
  };

  const describe = (s: FakeEbsSnapshot) => ({
    SnapshotId: s.id,
    OwnerId: OWNER_ID,
    Status: s.status,
    StartTime: s.startTime.getTime() / 1000,
    VolumeSize: s.volumeSize,
    BlockSize: EBS_BLOCK_SIZE,
    Tags: Object.entries(s.tags).map(([Key, Value]) => ({ Key, Value })),
    SseType: s.encrypted ? "sse-ebs" : "none",
    ...(s.parentId !== undefined ? { ParentSnapshotId: s.parentId } : {}),
    ...(s.description !== undefined ? { Description: s.description } : {}),
    ...(s.kmsKeyArn !== undefined ? { KmsKeyArn: s.kmsKeyArn } : {}),
  });

  const startSnapshot = ({ body }: ApiRequest): Answer => {
    const request = parseStart(jsonObject(body));
    const key = requestKey(request);
    const earlier = request.clientToken !== undefined ? store.byToken(request.clientToken) : undefined;
    if (earlier) {
      // Snapshots persisted before parameters were kept match any (lenient for old `tidemark local` state).
      if (earlier.request !== undefined && earlier.request !== key) {
        throw new ApiError(409, "ConflictException", `client token ${request.clientToken} was used by a request with other parameters`);
      }
      expireIfIdle(earlier.snapshot);
      return { status: 201, json: describe(earlier.snapshot) };
    }
    const parent = request.parentId !== undefined ? snapshotOf(request.parentId) : undefined;
    if (parent && parent.status !== "completed") throw invalid("INVALID_SNAPSHOT_ID", `parent snapshot ${parent.id} is ${parent.status}, not completed`);
    if (parent && parent.volumeSize > request.volumeSize) throw invalid("INVALID_VOLUME_SIZE", `VolumeSize ${request.volumeSize} is smaller than the parent's ${parent.volumeSize}`);
    const encrypted = parent ? parent.encrypted : request.encrypted === true;
    const kmsKeyArn = parent ? parent.kmsKeyArn : request.kmsKeyArn;
    const now = new Date();
    const snapshot: FakeEbsSnapshot = {
      id: `snap-${randomBytes(9).toString("hex").slice(0, 17)}`,
      status: "pending",
      volumeSize: request.volumeSize,
      tags: request.tags,
      encrypted,
      startTime: now,
      lastWriteTime: now,
      timeout: request.timeout,
      putBlocks: new Map(),
      ...(request.parentId !== undefined ? { parentId: request.parentId } : {}),
      ...(request.clientToken !== undefined ? { clientToken: request.clientToken } : {}),
      ...(request.description !== undefined ? { description: request.description } : {}),
      ...(kmsKeyArn !== undefined ? { kmsKeyArn } : {}),
    };
    store.add(snapshot, key);
    return { status: 201, json: describe(snapshot) };
  };

  const putSnapshotBlock = async ({ req, body, labels: [id = "", indexText = ""] }: ApiRequest): Promise<Answer> => {
    const snapshot = pending(id);
    const index = blockIndex(indexText, snapshot);
    const length = integerText(header(req, "x-amz-Data-Length"), "DataLength");
    if (length !== EBS_BLOCK_SIZE) throw invalid("INVALID_PARAMETER_VALUE", `DataLength must be ${EBS_BLOCK_SIZE}, got ${String(length)}`);
    if (body.length !== length) throw invalid("INVALID_BLOCK", `block ${index}: the body is ${body.length} bytes, DataLength says ${length}`);
    if (header(req, "x-amz-Checksum-Algorithm") !== "SHA256") throw invalid("INVALID_PARAMETER_VALUE", "ChecksumAlgorithm must be SHA256");
    const checksum = sha256(body).toString("base64");
    if (header(req, "x-amz-Checksum") !== checksum) throw invalid("INVALID_BLOCK", `block ${index}: Checksum does not match the data`);
    inRange(integerText(header(req, "x-amz-Progress"), "Progress"), 0, 100, "Progress");
    try {
      await fake.beforePut?.(id, index);
    } catch (error) {
      throw new InjectedFailure(500, "InternalServerException", `beforePut: ${error instanceof Error ? error.message : String(error)}`);
    }
    // The hook may have held the put while the snapshot was completed or timed out.
    if (snapshot.status !== "pending") throw invalid("INVALID_SNAPSHOT_ID", `snapshot ${id} became ${snapshot.status} before block ${index} was stored`);
    store.putBlock(snapshot, index, body, checksum);
    return { status: 201, headers: { "x-amz-Checksum": checksum, "x-amz-Checksum-Algorithm": "SHA256" } };
  };

  const completeSnapshot = ({ req, labels: [id = ""] }: ApiRequest): Answer => {
    const snapshot = pending(id);
    const count = integerText(header(req, "x-amz-ChangedBlocksCount"), "ChangedBlocksCount");
    if (count !== snapshot.putBlocks.size) throw invalid("INVALID_PARAMETER_VALUE", `ChangedBlocksCount ${String(count)} but ${snapshot.putBlocks.size} blocks were put`);
    const checksum = header(req, "x-amz-Checksum");
    if (checksum !== undefined) {
      if (header(req, "x-amz-Checksum-Algorithm") !== "SHA256") throw invalid("INVALID_PARAMETER_VALUE", "an aggregate checksum needs ChecksumAlgorithm SHA256");
      if (header(req, "x-amz-Checksum-Aggregation-Method") !== "LINEAR") throw invalid("INVALID_PARAMETER_VALUE", "an aggregate checksum needs ChecksumAggregationMethod LINEAR");
      if (checksum !== linearAggregate(snapshot.putBlocks)) throw invalid("INVALID_PARAMETER_VALUE", "the LINEAR aggregate checksum does not match the blocks put");
    }
    snapshot.status = "completed";
    snapshot.changedBlocksCount = count;
    // A lock by duration taken while pending starts counting now.
    const lock = snapshot.lock;
    if (lock?.durationDays !== undefined && lock.durationStartTime === undefined) {
      lock.durationStartTime = new Date().toISOString();
      lock.expiresOn = new Date(Date.now() + lock.durationDays * 86_400_000).toISOString();
    }
    store.save(snapshot);
    return { status: 202, json: { Status: "completed" } };
  };

  /** Block tokens are reported to expire (real EBS's tokens do) but never checked for it here. */
  const expiryTime = () => Date.now() / 1000 + 24 * 3600;

  const listSnapshotBlocks = ({ url, labels: [id = ""] }: ApiRequest): Answer => {
    const snapshot = completed(id);
    const owners = store.owners(id);
    const { indexes, nextToken } = page([...owners.keys()], listQuery(url, id), id);
    return {
      status: 200,
      json: {
        Blocks: indexes.map((index) => ({ BlockIndex: index, BlockToken: blockToken(owners.get(index)?.id ?? "", index) })),
        ExpiryTime: expiryTime(),
        VolumeSize: snapshot.volumeSize,
        BlockSize: EBS_BLOCK_SIZE,
        ...(nextToken !== undefined ? { NextToken: nextToken } : {}),
      },
    };
  };

  const listChangedBlocks = ({ url, labels: [id = ""] }: ApiRequest): Answer => {
    const second = completed(id);
    const firstId = url.searchParams.get("firstSnapshotId");
    const first = firstId !== null ? completed(firstId) : undefined;
    if (first && !store.lineage(first.id).some((a) => store.lineage(second.id).includes(a))) {
      throw invalid("UNRELATED_SNAPSHOTS", `snapshots ${first.id} and ${second.id} share no lineage`);
    }
    const after = store.owners(second.id);
    const before = first ? store.owners(first.id) : new Map<number, FakeEbsSnapshot>();
    const changed = [...new Set([...after.keys(), ...before.keys()])].filter((index) => after.get(index) !== before.get(index));
    const listing = `${first?.id ?? ""}..${second.id}`;
    const { indexes, nextToken } = page(changed, listQuery(url, listing), listing);
    const token = (owners: Map<number, FakeEbsSnapshot>, index: number) => {
      const owner = owners.get(index);
      return owner ? blockToken(owner.id, index) : undefined;
    };
    return {
      status: 200,
      json: {
        ChangedBlocks: indexes.map((index) => ({ BlockIndex: index, FirstBlockToken: token(before, index), SecondBlockToken: token(after, index) })),
        ExpiryTime: expiryTime(),
        VolumeSize: second.volumeSize,
        BlockSize: EBS_BLOCK_SIZE,
        ...(nextToken !== undefined ? { NextToken: nextToken } : {}),
      },
    };
  };

  const getSnapshotBlock = ({ url, labels: [id = "", indexText = ""] }: ApiRequest): Answer => {
    const snapshot = completed(id);
    const index = blockIndex(indexText, snapshot);
    const token = url.searchParams.get("blockToken");
    if (token === null) throw invalid("INVALID_BLOCK_TOKEN", "blockToken is required");
    const owner = store.owner(id, index);
    if (!owner || token !== blockToken(owner.id, index)) throw invalid("INVALID_BLOCK_TOKEN", `block ${index} of ${id}: the block token is not one a listing handed out for it`);
    const data = store.data(owner.id, index);
    if (!data) throw new ApiError(500, "InternalServerException", `the data of block ${index} of ${owner.id} is gone`);
    return {
      status: 200,
      headers: { "x-amz-Data-Length": String(data.length), "x-amz-Checksum": owner.putBlocks.get(index) ?? "", "x-amz-Checksum-Algorithm": "SHA256" },
      data,
    };
  };

  /** EC2 LockSnapshot: the API reference's parameters and rules for changing a lock that is already there. */
  const lockSnapshot = ({ req, body }: ApiRequest): Answer => {
    if (!(header(req, "content-type") ?? "").startsWith("application/x-www-form-urlencoded")) throw new Ec2Error("InvalidParameterValue", "an EC2 Query request is a form");
    const params = new URLSearchParams(body.toString("utf8"));
    const action = params.get("Action");
    if (action !== "LockSnapshot") throw new Ec2Error("InvalidAction", `The action ${String(action)} is not valid for this web service.`);
    if (params.get("Version") !== EC2_API_VERSION) throw new Ec2Error("InvalidParameterValue", `Version must be ${EC2_API_VERSION}`);
    const id = params.get("SnapshotId");
    if (id === null) throw new Ec2Error("MissingParameter", "The request must contain the parameter SnapshotId");
    const snapshot = SNAPSHOT_ID.test(id) ? store.snapshots.get(id) : undefined;
    if (!snapshot) throw new Ec2Error("InvalidSnapshot.NotFound", `The snapshot '${id}' does not exist.`);
    expireIfIdle(snapshot);
    if (snapshot.status === "error") throw new Ec2Error("IncorrectState", `snapshot ${id} is in the error state: only a pending or completed snapshot can be locked`);
    const mode = params.get("LockMode");
    if (mode !== "governance" && mode !== "compliance") throw new Ec2Error("InvalidParameterValue", `LockMode must be governance or compliance, not ${String(mode)}`);
    const durationText = params.get("LockDuration");
    const expirationText = params.get("ExpirationDate");
    if ((durationText === null) === (expirationText === null)) throw new Ec2Error("InvalidParameterCombination", "specify either LockDuration or ExpirationDate, not both and not neither");
    const coolOffText = params.get("CoolOffPeriod");
    if (coolOffText !== null && mode !== "compliance") throw new Ec2Error("InvalidParameterCombination", "CoolOffPeriod applies only to compliance mode");
    const coolOffHours = coolOffText !== null ? Number(coolOffText) : undefined;
    if (coolOffHours !== undefined && !(Number.isInteger(coolOffHours) && coolOffHours >= 1 && coolOffHours <= MAX_COOL_OFF_HOURS)) {
      throw new Ec2Error("InvalidParameterValue", `CoolOffPeriod must be 1 to ${MAX_COOL_OFF_HOURS} hours`);
    }
    const now = Date.now();
    let durationDays: number | undefined;
    let expiresOn: string | undefined;
    if (durationText !== null) {
      durationDays = Number(durationText);
      if (!(Number.isInteger(durationDays) && durationDays >= 1 && durationDays <= MAX_LOCK_DAYS)) throw new Ec2Error("InvalidParameterValue", `LockDuration must be 1 to ${MAX_LOCK_DAYS} days`);
      // A pending snapshot's lock duration starts once it completes.
      if (snapshot.status === "completed") expiresOn = new Date(now + durationDays * 86_400_000).toISOString();
    } else {
      const expiration = Date.parse(expirationText ?? "");
      if (!/^\d{4}-\d{2}-\d{2}T/.test(expirationText ?? "") || Number.isNaN(expiration)) throw new Ec2Error("InvalidParameterValue", `ExpirationDate ${String(expirationText)} is not an ISO 8601 time`);
      if (expiration <= now) throw new Ec2Error("InvalidParameterValue", "ExpirationDate must be in the future");
      if (expiration > now + MAX_LOCK_DAYS * 86_400_000) throw new Ec2Error("InvalidParameterValue", `ExpirationDate is more than ${MAX_LOCK_DAYS} days away`);
      expiresOn = new Date(expiration).toISOString();
    }
    const earlier = snapshot.lock;
    if (earlier && lockState(earlier, now) === "compliance") {
      // Past its cooling-off period a compliance lock can only be extended.
      if (mode !== "compliance") throw new Ec2Error("IncorrectState", `snapshot ${id} is locked in compliance mode: its mode cannot change`);
      const before = earlier.expiresOn !== undefined ? Date.parse(earlier.expiresOn) : undefined;
      const after = expiresOn !== undefined ? Date.parse(expiresOn) : undefined;
      if (before !== undefined && (after === undefined || after < before)) throw new Ec2Error("IncorrectState", `snapshot ${id} is locked in compliance mode until ${earlier.expiresOn ?? ""}: a lock can only be extended`);
    }
    const lock: FakeSnapshotLock = {
      mode,
      createdOn: new Date(now).toISOString(),
      ...(durationDays !== undefined ? { durationDays } : {}),
      ...(expiresOn !== undefined ? { expiresOn } : {}),
      ...(durationDays !== undefined && snapshot.status === "completed" ? { durationStartTime: new Date(now).toISOString() } : {}),
      ...(coolOffHours !== undefined ? { coolOffHours, coolOffExpiresOn: new Date(now + coolOffHours * 3_600_000).toISOString() } : {}),
    };
    snapshot.lock = lock;
    store.save(snapshot);
    const fields: [string, string | number | undefined][] = [
      ["snapshotId", snapshot.id],
      ["lockState", lockState(lock, now)],
      ["lockDuration", lock.durationDays],
      ["coolOffPeriod", lock.coolOffHours],
      ["coolOffPeriodExpiresOn", lock.coolOffExpiresOn],
      ["lockCreatedOn", lock.createdOn],
      ["lockExpiresOn", lock.expiresOn],
      ["lockDurationStartTime", lock.durationStartTime],
    ];
    const elements = fields.filter(([, value]) => value !== undefined).map(([name, value]) => `<${name}>${xmlEscape(String(value))}</${name}>`);
    return { status: 200, xml: `<?xml version="1.0" encoding="UTF-8"?>\n<LockSnapshotResponse xmlns="${EC2_XMLNS}"><requestId>${randomUUID()}</requestId>${elements.join("")}</LockSnapshotResponse>` };
  };

  const routes: Route[] = [
    { api: "StartSnapshot", method: "POST", path: /^\/snapshots$/, handle: startSnapshot },
    { api: "CompleteSnapshot", method: "POST", path: /^\/snapshots\/completion\/([^/]+)$/, handle: completeSnapshot },
    { api: "PutSnapshotBlock", method: "PUT", path: /^\/snapshots\/([^/]+)\/blocks\/([^/]+)$/, handle: putSnapshotBlock },
    { api: "GetSnapshotBlock", method: "GET", path: /^\/snapshots\/([^/]+)\/blocks\/([^/]+)$/, handle: getSnapshotBlock },
    { api: "ListSnapshotBlocks", method: "GET", path: /^\/snapshots\/([^/]+)\/blocks$/, handle: listSnapshotBlocks },
    { api: "ListChangedBlocks", method: "GET", path: /^\/snapshots\/([^/]+)\/changedblocks$/, handle: listChangedBlocks },
    { api: "LockSnapshot", service: "ec2", method: "POST", path: /^\/$/, handle: lockSnapshot },
  ];

  const serve = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const route = routes.find((r) => r.method === req.method && r.path.test(url.pathname));
    const what = route?.api ?? `${req.method ?? "?"} ${url.pathname}`;
    try {
      // The whole body first: an answer before it would cut the client's upload short.
      const body = await readBody(req);
      if (!route) throw new ApiError(404, "UnknownOperationException", "no EBS direct API at this method and path");
      calls.set(route.api, (calls.get(route.api) ?? 0) + 1);
      checkSigned(req, route.service ?? "ebs");
      let labels: string[];
      try {
        labels = (route.path.exec(url.pathname) ?? []).slice(1).map(decodeURIComponent);
      } catch {
        throw invalid("INVALID_PARAMETER_VALUE", "a path label is not valid percent-encoding");
      }
      send(res, await route.handle({ req, url, body, labels }));
    } catch (error) {
      if (error instanceof ClientGone) return;
      if (error instanceof Ec2Error) {
        refused.push(`${what}: ${error.code}: ${error.message}`);
        send(res, { status: error.status, xml: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${xmlEscape(error.code)}</Code><Message>${xmlEscape(error.message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>` });
        return;
      }
      const failure = error instanceof ApiError ? error : new ApiError(500, "InternalServerException", error instanceof Error ? error.message : String(error));
      if (!(failure instanceof InjectedFailure)) refused.push(`${what}: ${failure.type}${failure.reason ? ` (${failure.reason})` : ""}: ${failure.message}`);
      send(res, {
        status: failure.status,
        headers: { "x-amzn-ErrorType": failure.type },
        json: { Message: failure.message, ...(failure.reason ? { Reason: failure.reason } : {}) },
      });
    }
  };

  const server = createServer((req, res) => void serve(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", resolve);
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the fake EBS server has no TCP address");

  const fake: FakeEbs = {
    endpoint: `http://127.0.0.1:${address.port}`,
    snapshots: store.snapshots,
    refused,
    calls,
    readBlock(snapshotId, blockIndex) {
      const owner = store.owner(snapshotId, blockIndex);
      return owner ? store.data(owner.id, blockIndex) : undefined;
    },
    async stop() {
      // Calls a test hung in beforePut (a frozen Lambda) must not keep the server open.
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}
