// The actions that call AWS: a user Lambda (`invoke`), EventBridge (the
// `event` action's sink and the task events), AWS Backup (`backup`).

import type { BackupClient} from "@aws-sdk/client-backup";
import { StartBackupJobCommand } from "@aws-sdk/client-backup";
import type { LambdaClient } from "@aws-sdk/client-lambda";
import { InvokeCommand } from "@aws-sdk/client-lambda";
import { ActionFailedError, ActionSkippedError, EVENT_SOURCE, type ActionRequest, type ActionRunner } from "./actions.ts";
import { allowedFunction, formatFunctionArn, FunctionRefError, resolveFunction, type FunctionArn, type FunctionHome } from "./function-arn.ts";

/** Largest function response kept in a task result; longer ones are cut. */
const MAX_RESPONSE_CHARS = 64 * 1024;

function decodeResponse(payload: Uint8Array | undefined): unknown {
  if (!payload || payload.length === 0) return null;
  const text = Buffer.from(payload).toString("utf8");
  if (text.length > MAX_RESPONSE_CHARS) return `${text.slice(0, MAX_RESPONSE_CHARS)}... (${text.length} characters, cut)`;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** `invoke`: a synchronous call of an allow-listed function with the marker's context; its response is kept. */
export class InvokeAction implements ActionRunner {
  readonly #client: LambdaClient;
  readonly #home: FunctionHome;
  readonly #allowList: readonly string[];
  readonly #allowed: readonly FunctionArn[];

  /** `allowList` holds full function ARNs (a qualifier allows that version or alias only); `home` is the applier's own account and region. */
  constructor(client: LambdaClient, allowList: readonly string[], home: FunctionHome) {
    this.#client = client;
    this.#home = home;
    this.#allowList = allowList;
    // An entry that names no function allows nothing (the stack's settings refuse such entries before deploying).
    this.#allowed = allowList.flatMap((entry) => {
      try {
        return [resolveFunction(entry, home)];
      } catch {
        return [];
      }
    });
  }

  async run({ context, fields, signal }: ActionRequest): Promise<Record<string, unknown>> {
    const requested = fields.function;
    if (!requested) throw new ActionFailedError("an invoke marker must name a function (--function NAME)");
    let target: FunctionArn;
    try {
      target = resolveFunction(requested, this.#home);
    } catch (error) {
      if (error instanceof FunctionRefError) throw new ActionFailedError(error.message);
      throw error;
    }
    // What is invoked is the ARN that was checked, never the name as sent.
    const name = formatFunctionArn(target);
    if (!allowedFunction(this.#allowed, target)) {
      const list = this.#allowList.length > 0 ? this.#allowList.join(", ") : "empty";
      throw new ActionFailedError(`function ${name} is not on the target's invoke allow-list (${list}); add its full ARN to the stack setting tidemark:invokeAllowList`);
    }
    const payload = { source: EVENT_SOURCE, ...context, ...(fields.input ? { input: fields.input } : {}) };
    const out = await this.#client.send(
      new InvokeCommand({ FunctionName: name, InvocationType: "RequestResponse", Payload: Buffer.from(JSON.stringify(payload)) }),
      { abortSignal: signal },
    );
    const response = decodeResponse(out.Payload);
    if (out.FunctionError) {
      const detail = typeof response === "object" && response !== null && "errorMessage" in response ? String(response.errorMessage) : JSON.stringify(response);
      throw new ActionFailedError(`function ${name} failed (${out.FunctionError}): ${detail}`);
    }
    return { function: name, statusCode: out.StatusCode ?? 200, response, ...(out.ExecutedVersion ? { version: out.ExecutedVersion } : {}) };
  }
}

export interface BackupSettings {
  readonly vault: string;
  readonly roleArn: string;
  /** What a marker without --resource backs up: the target bucket. */
  readonly defaultResourceArn: string;
}

/** `backup`: an AWS Backup on-demand job, idempotent per task. */
export class BackupAction implements ActionRunner {
  readonly #client: BackupClient;
  readonly #settings: BackupSettings | undefined;

  constructor(client: BackupClient, settings: BackupSettings | undefined) {
    this.#client = client;
    this.#settings = settings;
  }

  async run({ context, fields, signal }: ActionRequest): Promise<Record<string, unknown>> {
    const settings = this.#settings;
    if (!settings) throw new ActionSkippedError("AWS Backup is not set up on this target (deploy the stack with -c tidemark:backup=true)");
    const resourceArn = fields.resourceArn ?? settings.defaultResourceArn;
    const out = await this.#client.send(
      new StartBackupJobCommand({
        BackupVaultName: settings.vault,
        ResourceArn: resourceArn,
        IamRoleArn: settings.roleArn,
        // The same task never starts two jobs, even when the applier runs it again.
        IdempotencyToken: `${context.set}/${context.taskId}`,
        RecoveryPointTags: { "tidemark:set": context.set, "tidemark:task": context.taskId, ...(context.label ? { "tidemark:label": context.label } : {}) },
      }),
      { abortSignal: signal },
    );
    if (!out.BackupJobId) throw new ActionFailedError("AWS Backup started no job");
    return {
      backupJobId: out.BackupJobId,
      resourceArn,
      ...(out.RecoveryPointArn ? { recoveryPointArn: out.RecoveryPointArn } : {}),
      ...(out.CreationDate ? { creationDate: out.CreationDate.toISOString() } : {}),
    };
  }
}
