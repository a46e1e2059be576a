// `tidemark doctor`: what a source host needs before it can replicate, checked
// one line each, without changing anything a recovery point depends on. The
// send check relies on SQS checking permissions before parameters: a
// SendMessage without a MessageGroupId never enters a FIFO queue, and its
// refusal says whether the caller may send.

import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { join } from "node:path";
import { GetObjectCommand, HeadBucketCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { PREFIX, statusKey } from "../contract/layout.ts";
import { agentFor, bypassesProxy, CaBundleError, caBundleFile, makeS3Client, makeSqsClient, proxyFor, proxyPlan, readCaBundle, readOwner, redactProxy, S3Store, type MinimumTransfer } from "../lambdas/target/index.ts";
import { guardSlowTransfers } from "../lambdas/target/slow-transfers.ts";
import { clientOptionsOf, READ_MINIMUM_TRANSFER } from "./aws-options.ts";
import { TARGET_READ_IDLE_TIMEOUT_MS } from "./commands/target-store.ts";
import { loadConfig, type AgentConfig } from "./config.ts";
import { checkRoots } from "./root-places.ts";
import { RootLookProcess } from "./root-look-process.ts";
import type { RootUnansweredError, RootWatchOptions } from "./root-watch.ts";
import type { RootLook } from "./set-roots.ts";
import { checkEventQueue } from "./doctor-event-queue.ts";
import { checkOwnerKey, ownerKeyFacts } from "./doctor-owner-key.ts";
import { spaceBallastNote } from "./journal-health.ts";
import { Journal } from "./journal.ts";
import { describeHold, holdRemedy, type RootHold } from "./set-roots.ts";

export type CheckLevel = "ok" | "warn" | "fail";

export interface Check {
  readonly name: string;
  readonly level: CheckLevel;
  readonly detail: string;
}

/** Node's major version the agent is built for, and the oldest it runs on. */
const NODE_WANTED = 24;
const NODE_OLDEST = 22;
/** SigV4 refuses requests more than 15 minutes off; the SDK corrects smaller skews itself. */
const SKEW_FAIL_MS = 15 * 60_000;
const SKEW_WARN_MS = 60_000;
/** Counting a set's folders stops here: a rough count is enough to compare with the inotify limit. */
const FOLDER_COUNT_BUDGET_MS = 2_000;

function errorName(error: unknown): string {
  const e = error as { name?: string; Code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  return e.Code ?? e.name ?? "Error";
}

function describe(error: unknown): string {
  const e = error as { message?: string; code?: string };
  const message = e.message && e.message !== "UnknownError" ? e.message : (e.code ?? "");
  return `${errorName(error)}${message ? `: ${message}` : ""}`;
}

const isDenied = (error: unknown) => /AccessDenied|Forbidden|NotAuthorized|InvalidClientTokenId|SignatureDoesNotMatch/i.test(describe(error));

export function checkNode(version: string = process.versions.node): Check {
  const major = Number(version.split(".")[0]);
  if (major >= NODE_WANTED) return { name: "node", level: "ok", detail: `v${version}` };
  if (major >= NODE_OLDEST) return { name: "node", level: "warn", detail: `v${version}: tidemark is built and tested for Node ${NODE_WANTED}` };
  return { name: "node", level: "fail", detail: `v${version}: tidemark needs Node ${NODE_WANTED}` };
}

async function checkCredentials(s3: S3Client, config: AgentConfig): Promise<Check> {
  try {
    const credentials = await s3.config.credentials();
    const key = credentials.accessKeyId;
    return { name: "credentials", level: "ok", detail: `access key …${key.slice(-4)}${config.endpoint ? ` (endpoint ${config.endpoint})` : ""}` };
  } catch (error) {
    return { name: "credentials", level: "fail", detail: `no AWS credentials found (${describe(error)}): set AWS_PROFILE, the AWS_* variables or an instance role` };
  }
}

async function checkQueue(sqs: SQSClient, config: AgentConfig): Promise<Check> {
  try {
    const reply = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: config.queueUrl, AttributeNames: ["FifoQueue"] }));
    if (reply.Attributes?.FifoQueue !== "true") return { name: "queue", level: "fail", detail: `${config.queueUrl} is not a FIFO queue` };
    return { name: "queue", level: "ok", detail: `${config.queueUrl} (FIFO)` };
  } catch (error) {
    return { name: "queue", level: "fail", detail: `cannot read ${config.queueUrl}: ${describe(error)}` };
  }
}

async function checkSend(sqs: SQSClient, config: AgentConfig): Promise<Check> {
  try {
    // No MessageGroupId: a FIFO queue refuses it after checking the caller's permission, so nothing is ever queued.
    await sqs.send(new SendMessageCommand({ QueueUrl: config.queueUrl, MessageBody: "{}" }));
    return { name: "send", level: "fail", detail: `${config.queueUrl} accepted a message without a group id: it does not behave as a FIFO queue` };
  } catch (error) {
    if (isDenied(error)) return { name: "send", level: "fail", detail: `not allowed to send to ${config.queueUrl}: ${describe(error)}` };
    if (/MissingParameter|InvalidParameterValue|MessageGroupId/i.test(describe(error))) return { name: "send", level: "ok", detail: "sqs:SendMessage allowed" };
    return { name: "send", level: "fail", detail: `cannot send to ${config.queueUrl}: ${describe(error)}` };
  }
}

async function checkBucket(s3: S3Client, config: AgentConfig): Promise<Check> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: config.bucket }));
    return { name: "bucket", level: "ok", detail: config.bucket };
  } catch (error) {
    // The agent's policy does not grant HeadBucket on AWS: the object checks below say what it can do.
    if (isDenied(error)) return { name: "bucket", level: "ok", detail: `${config.bucket} (exists; HeadBucket not granted)` };
    return { name: "bucket", level: "fail", detail: `cannot reach bucket ${config.bucket}: ${describe(error)}` };
  }
}

/**
 * Stages a small object under the set's staging prefix: staging objects expire by lifecycle and count only when a message names them.
 * With its SHA-256, as every upload carries one: a bucket with Object Lock refuses content without a checksum.
 */
export async function checkStage(s3: S3Client, config: Pick<AgentConfig, "bucket">, set: string): Promise<Check> {
  const key = `${PREFIX.staging}${set}/doctor-${Date.now()}`;
  const body = "tidemark doctor";
  try {
    await s3.send(new PutObjectCommand({ Bucket: config.bucket, Key: key, Body: body, ChecksumSHA256: createHash("sha256").update(body).digest("base64") }));
    return { name: `stage ${set}`, level: "ok", detail: `may write ${PREFIX.staging}${set}/` };
  } catch (error) {
    return { name: `stage ${set}`, level: "fail", detail: `cannot write ${key}: ${describe(error)}` };
  }
}

async function checkRead(s3: S3Client, config: AgentConfig, set: string): Promise<Check> {
  const key = statusKey(set);
  try {
    await s3.send(new GetObjectCommand({ Bucket: config.bucket, Key: key }));
    return { name: `read ${set}`, level: "ok", detail: `may read ${key}` };
  } catch (error) {
    if (/NoSuchKey|NotFound/.test(describe(error))) return { name: `read ${set}`, level: "ok", detail: `may read ${PREFIX.state}${set}/ (nothing applied yet)` };
    return { name: `read ${set}`, level: "fail", detail: `cannot read ${key}: ${describe(error)}` };
  }
}

/** A HEAD request's Date header, through the agent's proxy and CA bundle like its AWS requests. */
function headDate(url: URL, agent: http.Agent): Promise<string | undefined> {
  const transport = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const request = transport.request(url, { method: "HEAD", agent, signal: AbortSignal.timeout(10_000) }, (reply) => {
      reply.resume();
      resolve(reply.headers.date);
    });
    request.on("error", reject);
    request.end();
  });
}

/** The endpoint's clock from a response's Date header, against this host's. */
async function checkClock(config: AgentConfig, now: () => number, rule: MinimumTransfer): Promise<Check> {
  const url = config.endpoint ?? `https://s3.${config.region}.amazonaws.com/`;
  let agent: http.Agent | undefined;
  try {
    agent = guardSlowTransfers(agentFor(new URL(url), clientOptionsOf(config).http ?? {}), rule);
    const sent = now();
    const date = await headDate(new URL(url), agent);
    const received = now();
    if (!date) return { name: "clock", level: "warn", detail: `${url} sent no Date header to compare with` };
    // The Date header has whole seconds: half a second either way is no skew.
    const skew = Date.parse(date) + 500 - (sent + received) / 2;
    const seconds = Math.round(skew / 1000);
    const detail = `${Math.abs(seconds)} s ${skew >= 0 ? "behind" : "ahead of"} ${new URL(url).host}`;
    if (Math.abs(skew) > SKEW_FAIL_MS) return { name: "clock", level: "fail", detail: `${detail}: AWS refuses requests signed more than 15 minutes off (fix NTP)` };
    if (Math.abs(skew) > SKEW_WARN_MS) return { name: "clock", level: "warn", detail: `${detail}: the SDK corrects it, but marker times are this host's (fix NTP)` };
    return { name: "clock", level: "ok", detail };
  } catch (error) {
    return { name: "clock", level: "warn", detail: `could not read ${url}'s clock: ${describe(error)}` };
  } finally {
    agent?.destroy();
  }
}

/** Which proxy AWS requests go through (the config's, else the environment's), endpoint by endpoint, and the CA bundle added. */
export function checkProxy(config: AgentConfig, env: NodeJS.ProcessEnv = process.env): Check {
  const settings = clientOptionsOf(config).http ?? {};
  const plan = proxyPlan(settings, env);
  const bundle = caBundleFile(settings, env);
  const certificates = bundle ? readCaBundle(bundle.file, bundle.source).length : 0;
  const ca = bundle ? `; CA bundle ${bundle.file} (${bundle.source}, ${certificates} certificate${certificates === 1 ? "" : "s"})` : "";
  if (!plan) return { name: "proxy", level: "ok", detail: `none: AWS is reached directly${ca}` };
  const endpoints = [config.queueUrl, config.endpoint ?? `https://s3.${config.region}.amazonaws.com/`, ...(config.ebsEndpoint ? [config.ebsEndpoint] : [])].map((url) => new URL(url));
  const routes = [...new Set(endpoints.map((url) => url.origin))].map((origin) => {
    const url = new URL(origin);
    const proxy = proxyFor(url, plan);
    if (proxy) return `${url.host} through ${redactProxy(proxy)}`;
    return `${url.host} direct (${bypassesProxy(url, plan.noProxy) ? "NO_PROXY" : `no proxy for ${url.protocol.slice(0, -1)}`})`;
  });
  return { name: "proxy", level: "ok", detail: `${plan.source}${plan.noProxy ? `, NO_PROXY=${plan.noProxy}` : ""}: ${routes.join("; ")}${ca}` };
}

/** Folders under root, counted until the budget runs out. */
export function countFolders(root: string, budgetMs = FOLDER_COUNT_BUDGET_MS): { folders: number; complete: boolean } {
  const deadline = Date.now() + budgetMs;
  const pending = [root];
  let folders = 0;
  while (pending.length > 0) {
    if (Date.now() > deadline) return { folders, complete: false };
    const dir = pending.pop() ?? root;
    folders += 1;
    try {
      for (const entry of readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) pending.push(join(dir, entry.name));
    } catch {
      // An unreadable folder is the scan's to report; it costs no watch.
    }
  }
  return { folders, complete: true };
}

/** One inotify watch per folder: the sets' folders against the kernel's per-user limit. */
export function checkInotify(config: AgentConfig, limitFile = "/proc/sys/fs/inotify/max_user_watches"): Check {
  const trees = config.sets.filter((set) => !set.volume);
  if (trees.length === 0) return { name: "inotify", level: "ok", detail: "no folder sets" };
  let limit: number;
  try {
    limit = Number(readFileSync(limitFile, "utf8").trim());
  } catch {
    return { name: "inotify", level: "warn", detail: `cannot read ${limitFile}: the watcher's limit is unknown here` };
  }
  let folders = 0;
  let complete = true;
  for (const set of trees) {
    const counted = countFolders(set.root);
    folders += counted.folders;
    complete &&= counted.complete;
  }
  const count = `${complete ? "" : "at least "}${folders} folders`;
  const fix = `raise it: sysctl fs.inotify.max_user_watches=${Math.max(limit * 2, folders * 2)} (else the agent falls back to timed scans)`;
  if (folders > limit) return { name: "inotify", level: "fail", detail: `${count} to watch, limit ${limit}: ${fix}` };
  if (folders > limit * 0.8) return { name: "inotify", level: "warn", detail: `${count} to watch, limit ${limit} (other programs share it): ${fix}` };
  return { name: "inotify", level: "ok", detail: `${count} to watch, limit ${limit}` };
}

export interface DoctorOptions {
  readonly nodeVersion?: string;
  readonly now?: () => number;
  readonly inotifyLimitFile?: string;
  readonly eventQueueLimitFile?: string;
  /** What a connection must move while a request is on it (tests pass a small window); else the CLI reads'. */
  readonly minimumTransfer?: MinimumTransfer;
  /** Where the machine id is read (tests stand for another machine). @default MACHINE_ID_FILES */
  readonly machineIdFiles?: readonly string[];
  /** How the sets' roots are looked at (a test's stand-in never answers); else a look process of doctor's own. */
  readonly rootLook?: Pick<RootLook, "stat" | "realpath">;
  /** The root looks' time limit (a test fires it by hand). */
  readonly rootWatch?: RootWatchOptions;
}

/** A state folder an agent ran on that holds no space ballast (its room to mark messages sent on a full disk): a warning. */
export function checkSpaceBallast(stateDir: string): Check | undefined {
  const note = spaceBallastNote(stateDir);
  return note === null ? undefined : { name: "space ballast", level: "warn", detail: note };
}

/**
 * The sets the agent holds (their root missing, swapped, emptied, unreadable or not answering: set-roots.ts), as recorded in the
 * state folder's journal: each a failed check naming the root and what to do.
 */
export function rootHolds(stateDir: string): RootHold[] {
  if (!existsSync(join(stateDir, "journal.db"))) return [];
  try {
    const journal = Journal.open(stateDir, { reader: true });
    try {
      return journal.roots.holds();
    } finally {
      journal.close();
    }
  } catch {
    // A journal that cannot be opened is the agent's and status's to name.
    return [];
  }
}

function checkRootHold(hold: RootHold): Check {
  return { name: `set ${hold.set} root`, level: "fail", detail: `held (${hold.state}) since ${hold.since}: ${describeHold(hold)}; ${holdRemedy(hold)}` };
}

/** The key each set's owner record names (undefined: none yet), or undefined when one cannot be read. */
async function ownerKeysOf(store: S3Store, config: AgentConfig): Promise<Map<string, string | undefined> | undefined> {
  try {
    return new Map(await Promise.all(config.sets.map(async (set) => [set.name, (await readOwner(store, set.name))?.keyId] as const)));
  } catch {
    return undefined;
  }
}

/** Runs every check; a check that cannot run (no config) leaves the ones that depend on it out. */
export async function runDoctor(configFile: string, options: DoctorOptions = {}): Promise<Check[]> {
  const checks: Check[] = [checkNode(options.nodeVersion)];
  let config: AgentConfig;
  let unanswered: readonly RootUnansweredError[];
  try {
    config = loadConfig(configFile);
    // A held set's missing root is named by its hold (with what to do), not as a broken config.
    const holds = rootHolds(config.stateDir);
    // Through a look process with a time limit: a root on a hung network file system fails its check, not doctor.
    const look = new RootLookProcess(config.sets.length + 1);
    try {
      unanswered = await checkRoots(config, (set) => holds.some((hold) => hold.set === set), options.rootLook ?? look, options.rootWatch);
    } finally {
      look.close();
    }
    checks.push({ name: "config", level: "ok", detail: `${configFile}: ${config.sets.map((s) => s.name).join(", ")}` });
    checks.push(...unanswered.map((error) => ({ name: `root ${error.root}`, level: "warn" as const, detail: `${error.message}; whether it overlaps another set could not be checked` })));
    checks.push(...holds.map(checkRootHold));
    const ballast = checkSpaceBallast(config.stateDir);
    if (ballast) checks.push(ballast);
  } catch (error) {
    checks.push({ name: "config", level: "fail", detail: (error as Error).message });
    return checks;
  }
  // The CLI reads' limits: an endpoint answering byte by byte held doctor (which status suggests then) for minutes.
  const rule = options.minimumTransfer ?? READ_MINIMUM_TRANSFER;
  const clientOptions = clientOptionsOf(config, { maxAttempts: 1, idleTimeoutMs: TARGET_READ_IDLE_TIMEOUT_MS, minimumTransfer: rule });
  let s3: S3Client;
  let sqs: SQSClient;
  try {
    checks.push(checkProxy(config));
    s3 = makeS3Client(clientOptions);
    sqs = makeSqsClient(clientOptions);
  } catch (error) {
    checks.push({ name: error instanceof CaBundleError ? "ca bundle" : "proxy", level: "fail", detail: (error as Error).message });
    return checks;
  }
  try {
    const credentials = await checkCredentials(s3, config);
    checks.push(credentials);
    if (credentials.level === "fail") return checks;
    const queue = await checkQueue(sqs, config);
    checks.push(queue);
    if (queue.level !== "fail") checks.push(await checkSend(sqs, config));
    const bucket = await checkBucket(s3, config);
    checks.push(bucket);
    if (bucket.level !== "fail") {
      for (const set of config.sets) checks.push(await checkStage(s3, config, set.name), await checkRead(s3, config, set.name));
    }
    const ownerKey = ownerKeyFacts(config.stateDir, options.machineIdFiles);
    // The owner records are read only for a key made for a copy: whether this host owns its sets again.
    const owners = ownerKey?.copied && bucket.level !== "fail" ? await ownerKeysOf(new S3Store(s3, config.bucket), config) : undefined;
    const ownerCheck = checkOwnerKey(ownerKey, owners);
    if (ownerCheck) checks.push(ownerCheck);
    // The folders under a root that did not answer are not counted: the count's reads would hang on it.
    const answering = { ...config, sets: config.sets.filter((set) => !unanswered.some((error) => error.root === set.root)) };
    checks.push(checkInotify(answering, options.inotifyLimitFile), checkEventQueue(answering, options.eventQueueLimitFile), await checkClock(config, options.now ?? Date.now, rule));
    return checks;
  } finally {
    s3.destroy();
    sqs.destroy();
  }
}
