// Protocol-level fakes of the AWS APIs task actions call and no emulator
// here covers: Lambda Invoke (REST), EventBridge PutEvents (JSON 1.1) and
// AWS Backup StartBackupJob (REST JSON). The real SDK clients talk to it over
// HTTP on 127.0.0.1; it checks what they send and records it.

import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

export interface Invocation {
  /** The function's name. */
  readonly function: string;
  /** The FunctionName as the client sent it (a name or an ARN, with its qualifier). */
  readonly requested: string;
  readonly payload: Record<string, unknown>;
}

export interface PutEvent {
  readonly bus: string;
  readonly source: string;
  readonly detailType: string;
  readonly detail: Record<string, unknown>;
}

export interface BackupJob {
  readonly id: string;
  readonly vault: string;
  readonly resourceArn: string;
  readonly roleArn: string;
  readonly token: string;
  readonly tags: Record<string, string>;
}

/** What a fake function does with a payload: answer after a delay, or fail like a function that threw. */
export type FakeFunction = (payload: Record<string, unknown>) => { delayMs?: number; response?: unknown; error?: string };

export interface FakeAws {
  readonly endpoint: string;
  readonly invocations: Invocation[];
  readonly events: PutEvent[];
  readonly backupJobs: BackupJob[];
  /** Functions that exist, by name. */
  readonly functions: Map<string, FakeFunction>;
  /** Requests the fake refused, with why: a test asserts this stays empty. */
  readonly refused: string[];
  /** Invocations given a delay (FakeFunction's delayMs) that the fake has not answered yet: a caller that returns while this is above 0 did not wait for them. */
  unanswered(): number;
  stop(): Promise<void>;
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (text += chunk));
    req.on("end", () => {
      try {
        resolve(text === "" ? {} : JSON.parse(text));
      } catch (error) {
        reject(error);
      }
    });
    req.on("error", reject);
  });
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? Object.fromEntries(Object.entries(value)) : {};
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

export async function startFakeAws(): Promise<FakeAws> {
  const invocations: Invocation[] = [];
  const events: PutEvent[] = [];
  const backupJobs: BackupJob[] = [];
  const functions = new Map<string, FakeFunction>();
  const refused: string[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const refuse = (res: ServerResponse, status: number, type: string, message: string, protocol: "rest" | "json") => {
    refused.push(`${type}: ${message}`);
    if (protocol === "json") send(res, status, { __type: type, message });
    else send(res, status, { message, Type: "User" }, { "x-amzn-errortype": type });
  };

  const invoke = async (req: IncomingMessage, res: ServerResponse, requested: string) => {
    // Functions are kept by name; an ARN (arn:...:function:NAME[:QUALIFIER]) names its function in field 7.
    const name = requested.startsWith("arn:") ? (requested.split(":")[6] ?? requested) : requested;
    if (req.headers["x-amz-invocation-type"] !== "RequestResponse") {
      return refuse(res, 400, "InvalidParameterValueException", `expected a synchronous invoke, got ${String(req.headers["x-amz-invocation-type"])}`, "rest");
    }
    const fn = functions.get(name);
    if (!fn) return refuse(res, 404, "ResourceNotFoundException", `Function not found: ${name}`, "rest");
    const payload = record(await readJson(req));
    invocations.push({ function: name, requested, payload });
    const outcome = fn(payload);
    const answer = () => {
      if (res.destroyed) return;
      if (outcome.error !== undefined) {
        send(res, 200, { errorType: "Error", errorMessage: outcome.error }, { "x-amz-function-error": "Unhandled", "x-amz-executed-version": "$LATEST" });
      } else send(res, 200, outcome.response ?? null, { "x-amz-executed-version": "$LATEST" });
    };
    if (!outcome.delayMs) return answer();
    const timer = setTimeout(() => {
      timers.delete(timer);
      answer();
    }, outcome.delayMs);
    timers.add(timer);
  };

  const putEvents = async (req: IncomingMessage, res: ServerResponse) => {
    const body = record(await readJson(req));
    const entries = Array.isArray(body.Entries) ? body.Entries.map(record) : [];
    if (entries.length === 0 || entries.length > 10) return refuse(res, 400, "ValidationException", "Entries must hold 1 to 10 events", "json");
    const ids: { EventId: string }[] = [];
    for (const entry of entries) {
      let detail: unknown;
      try {
        detail = JSON.parse(String(entry.Detail));
      } catch {
        return refuse(res, 400, "ValidationException", "Detail is not valid JSON", "json");
      }
      if (typeof entry.Source !== "string" || typeof entry.DetailType !== "string" || typeof entry.EventBusName !== "string") {
        return refuse(res, 400, "ValidationException", "Source, DetailType and EventBusName are required", "json");
      }
      events.push({ bus: entry.EventBusName, source: entry.Source, detailType: entry.DetailType, detail: record(detail) });
      ids.push({ EventId: randomUUID() });
    }
    send(res, 200, { Entries: ids, FailedEntryCount: 0 }, { "content-type": "application/x-amz-json-1.1" });
  };

  const startBackupJob = async (req: IncomingMessage, res: ServerResponse) => {
    const body = record(await readJson(req));
    const { BackupVaultName: vault, ResourceArn: resourceArn, IamRoleArn: roleArn, IdempotencyToken: token } = body;
    if (typeof vault !== "string" || typeof resourceArn !== "string" || typeof roleArn !== "string") {
      return refuse(res, 400, "InvalidParameterValueException", "BackupVaultName, ResourceArn and IamRoleArn are required", "rest");
    }
    if (!resourceArn.startsWith("arn:")) return refuse(res, 400, "InvalidParameterValueException", `ResourceArn ${resourceArn} is not an ARN`, "rest");
    const previous = typeof token === "string" ? backupJobs.find((job) => job.token === token) : undefined;
    const job = previous ?? {
      id: randomUUID(),
      vault,
      resourceArn,
      roleArn,
      token: typeof token === "string" ? token : "",
      tags: Object.fromEntries(Object.entries(record(body.RecoveryPointTags)).map(([k, v]) => [k, String(v)])),
    };
    if (!previous) backupJobs.push(job);
    send(res, 200, { BackupJobId: job.id, CreationDate: Date.now() / 1000, RecoveryPointArn: `arn:aws:backup:us-east-1:000000000000:recovery-point:${job.id}` });
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://fake");
    const invokePath = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/.exec(url.pathname);
    const handle =
      req.method === "POST" && invokePath
        ? invoke(req, res, decodeURIComponent(invokePath[1] ?? ""))
        : req.method === "POST" && req.headers["x-amz-target"] === "AWSEvents.PutEvents"
          ? putEvents(req, res)
          : req.method === "PUT" && url.pathname === "/backup-jobs"
            ? startBackupJob(req, res)
            : Promise.resolve(refuse(res, 404, "UnknownOperationException", `${req.method ?? "?"} ${url.pathname} ${String(req.headers["x-amz-target"] ?? "")}`, "json"));
    handle.catch((error: unknown) => refuse(res, 400, "SerializationException", String(error), "json"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("the fake AWS server has no TCP address");
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    invocations,
    events,
    backupJobs,
    functions,
    refused,
    unanswered: () => timers.size,
    async stop() {
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
