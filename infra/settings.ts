// The stack's settings: every knob a platform engineer may turn, with its
// default, read once from CDK context (cdk.json or `-c key=value`) and
// validated, so a typo fails the synth with the key's name instead of
// deploying something else.

import { z } from "zod";
import { DEFAULT_POINT_IN_TIME_DAYS } from "../contract/history.ts";
import { setNameProblem } from "../contract/paths.ts";
import { REPLICATION_QUEUE } from "../contract/queue.ts";

/** A source host of `tidemark:hosts`. */
export interface HostSettings {
  /** Names the host's role and its stack output (HostRoleArn<Name>): lower-case letters, digits and '-'. */
  readonly name: string;
  /** The sets this host replicates; a set belongs to one host. */
  readonly sets: readonly string[];
  /**
   * Who may assume the host's role: an account id or a principal ARN (e.g. the host's IAM Roles Anywhere role).
   * @default tidemark:agentRoleTrust, else this account
   */
  readonly trust?: string;
}

export interface TidemarkSettings {
  /**
   * Prefix of every physical name (queue, bucket suffix, event bus, dashboard).
   * @default "tidemark"
   */
  readonly namePrefix: string;
  /**
   * Whether the applier runs task markers' actions. With false, markers are
   * still checkpointed and their results written, with the action skipped.
   * @default true
   */
  readonly tasksEnabled: boolean;
  /**
   * ARNs of the Lambda functions an `invoke` marker may call. The applier's
   * role gets lambda:InvokeFunction on these and nothing else.
   * @default []
   */
  readonly invokeAllowList: readonly string[];
  /**
   * Days a point-in-time snapshot manifest (and the content only it keeps) is retained.
   * @default 30
   */
  readonly snapshotRetentionDays: number;
  /**
   * The protection window: every moment of the last N days restores
   * (`tidemark restore --at`), and nothing a source host sends removes what
   * it needs. 0 turns point-in-time history off.
   * @default 7
   */
  readonly pointInTimeDays: number;
  /**
   * Create an AWS Backup vault and a service role for `backup` markers.
   * @default false
   */
  readonly backup: boolean;
  /**
   * Give the applier the EBS direct API permissions `ebs-snapshot` markers of volume sets need.
   * @default false
   */
  readonly volumeSnapshots: boolean;
  /**
   * KMS key ARN the EBS snapshots are encrypted with (needs volumeSnapshots).
   * @default the account's default EBS encryption
   */
  readonly ebsKmsKeyArn?: string;
  /**
   * The most applier invocations at once (the event source mapping's maximum
   * concurrency, 2..1000). Each active set needs one.
   * @default 10
   */
  readonly applierConcurrency: number;
  /**
   * The applier's timeout in seconds; the queue's visibility timeout is six times this.
   * @default 120
   */
  readonly applierTimeoutSeconds: number;
  /**
   * The applier's memory in MiB.
   * @default 1024
   */
  readonly applierMemoryMiB: number;
  /**
   * Receives of one message before it goes to the dead-letter queue.
   * @default 5
   */
  readonly maxReceiveCount: number;
  /**
   * Days noncurrent object versions are kept in the versioned target bucket:
   * at least snapshotRetentionDays, and pointInTimeDays + 1 (point-in-time
   * history reads replaced content from them).
   * @default 30
   */
  readonly noncurrentVersionDays: number;
  /**
   * Alarm when the oldest message in the queue is older than this many seconds.
   * @default 300
   */
  readonly maxMessageAgeSeconds: number;
  /**
   * Alarm when no recovery drill (`tidemark drill`, or the agent's `drills`
   * schedule) passed within this many hours (1-168); 0 turns the alarm off.
   * @default 48
   */
  readonly drillMaxAgeHours: number;
  /**
   * An SNS topic ARN the alarms notify; without one, the alarms only show in CloudWatch.
   * @default none
   */
  readonly alarmTopicArn?: string;
  /**
   * Create an IAM user with the agent policy (the keys are created by you, not by the stack).
   * @default false
   */
  readonly agentUser: boolean;
  /**
   * A principal ARN (an account, a role, IAM Roles Anywhere) allowed to assume
   * an agent role that carries the agent policy.
   * @default none
   */
  readonly agentRoleTrust?: string;
  /**
   * Source hosts, each with its own IAM role scoped to its own sets (staging
   * writes, reads for restore and status, its EBS snapshots by tag), and the
   * applier taking a set's messages only from its host's role. Without hosts,
   * every agent uses the one shared agent policy.
   * @default []
   */
  readonly hosts: readonly HostSettings[];
  /**
   * IAM role and user ARNs (of the stack's account) allowed to send task
   * markers straight to the queue for any set; the applier then takes such a
   * marker only from these and from the role of the host that owns the set
   * (`hosts`). The stack resolves each to the unique id SQS names it by
   * (RoleId, UserId) at deploy time and lets it send to the queue. An empty
   * list allows only the hosts' roles.
   * @default none: the looser rule (with hosts, any sender that is no host's role; without, everyone)
   */
  readonly markerSenders?: readonly string[];
  /**
   * Any new value looks the markerSenders' ids up again on the next deploy
   * (and rewrites the queue's grant to them): for a listed role or user that
   * was deleted and created again under the same name, which has a new id.
   * @default none
   */
  readonly markerSendersRefresh?: string;
  /**
   * Keep the target bucket (and its data) when the stack is destroyed.
   * @default true
   */
  readonly retainData: boolean;
  /**
   * S3 Object Lock on the target bucket: every object version written is
   * kept at least this many days, whatever anyone asks (see immutableMode).
   * 0 leaves Object Lock off. Set only when the bucket is created.
   * @default 0
   */
  readonly immutableDays: number;
  /**
   * Object Lock's retention mode: "governance" (principals with
   * s3:BypassGovernanceRetention may still delete) or "compliance" (nobody,
   * the account's root included, until the days passed).
   * @default "governance"
   */
  readonly immutableMode: LockMode;
  /**
   * EBS snapshot lock: each EBS snapshot an `ebs-snapshot` marker cuts is
   * locked against deletion for this many days (needs volumeSnapshots). 0 = off.
   * @default 0
   */
  readonly snapshotLockDays: number;
  /**
   * The EBS snapshot lock's mode: "governance" or "compliance" (no cooling-off period).
   * @default "governance"
   */
  readonly snapshotLockMode: LockMode;
}

/** How a lock holds: "governance" can be lifted by principals allowed to, "compliance" by nobody. */
export type LockMode = "governance" | "compliance";

const lambdaArn = /^arn:aws[\w-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9$_-]+)?$/;

const principal = z.string().regex(/^(arn:aws[\w-]*:[a-z0-9-]*:[a-z0-9-]*:\d{12}:.+|\d{12})$/, "an ARN or an account id");

const HostSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, "lower-case letters, digits and '-', starting with a letter, at most 32 characters"),
    sets: z
      .array(
        z.string().superRefine((name, ctx) => {
          const problem = setNameProblem(name);
          if (problem) ctx.addIssue({ code: "custom", message: problem });
        }),
      )
      .min(1, "a host needs at least one set"),
    trust: principal.optional(),
  })
  .strict();

/** Hosts from context: a JSON text (`-c tidemark:hosts='[...]'`) or the array itself (cdk.json). */
const Hosts = z
  .preprocess((value, ctx) => {
    if (typeof value !== "string") return value;
    try {
      const parsed: unknown = JSON.parse(value);
      return parsed;
    } catch {
      ctx.addIssue({ code: "custom", message: 'a JSON array of hosts, e.g. [{"name":"web1","sets":["www"]}]' });
      return z.NEVER;
    }
  }, z.array(HostSchema))
  .superRefine((hosts, ctx) => {
    const owners = new Map<string, string>();
    hosts.forEach((host, i) => {
      if (hosts.findIndex((other) => other.name === host.name) !== i) ctx.addIssue({ code: "custom", path: [i, "name"], message: `host "${host.name}" is given twice` });
      for (const set of host.sets) {
        const owner = owners.get(set);
        if (owner !== undefined && owner !== host.name) ctx.addIssue({ code: "custom", path: [i, "sets"], message: `set "${set}" belongs to host "${owner}" and "${host.name}": a set has one host` });
        owners.set(set, host.name);
      }
    });
  });

/** An IAM role or user ARN: what `tidemark:markerSenders` lists. Role and user names may sit under a path. */
const IAM_PRINCIPAL_ARN = /^arn:aws[\w-]*:iam::(\d{12}):(role|user)\/(?:[\w+=,.@-]+\/)*[\w+=,.@-]{1,128}$/;

/** Its kind and name (the last part of the path, what iam:GetRole/GetUser take) and account. */
export function iamPrincipalOf(arn: string): { kind: "role" | "user"; name: string; account: string } {
  const match = IAM_PRINCIPAL_ARN.exec(arn);
  if (!match?.[1] || !match[2]) throw new SettingsError(`tidemark setting markerSenders: ${arn} is not an IAM role or user ARN`);
  return { kind: match[2] === "role" ? "role" : "user", name: arn.slice(arn.lastIndexOf("/") + 1), account: match[1] };
}

const markerSender = z.string().superRefine((arn, ctx) => {
  if (IAM_PRINCIPAL_ARN.test(arn)) return;
  const session = /^arn:(aws[\w-]*):sts::(\d{12}):assumed-role\/([^/]+)\//.exec(arn);
  // A session ARN drops the role's path (an IAM Identity Center role's is aws-reserved/sso.amazonaws.com/...).
  ctx.addIssue({
    code: "custom",
    message: session
      ? `${arn} is a role session; name the role, arn:${session[1]}:iam::${session[2]}:role/${session[3]} with its path if it has one (\`aws iam get-role --role-name ${session[3]} --query Role.Arn\` prints it; a role's every session sends as the role)`
      : `${arn} is not an IAM role or user ARN (arn:aws:iam::123456789012:role/NAME or arn:aws:iam::123456789012:user/NAME)`,
  });
});

/** Marker senders from context: a JSON array (`-c tidemark:markerSenders='["arn:..."]'`), comma-separated ARNs, or the array itself (cdk.json). */
const MarkerSenders = z
  .preprocess((value, ctx) => {
    if (typeof value !== "string") return value;
    if (value.trim() === "") {
      ctx.addIssue({ code: "custom", message: "empty: give [] to allow only the hosts' roles, or leave the setting out for the looser default" });
      return z.NEVER;
    }
    if (!value.trim().startsWith("[")) return value.split(",").map((arn) => arn.trim()).filter(Boolean);
    try {
      const parsed: unknown = JSON.parse(value);
      return parsed;
    } catch {
      ctx.addIssue({ code: "custom", message: 'a JSON array of IAM role or user ARNs, e.g. ["arn:aws:iam::123456789012:role/ops"]' });
      return z.NEVER;
    }
  }, z.array(markerSender))
  .superRefine((arns, ctx) => {
    arns.forEach((arn, i) => {
      if (arns.indexOf(arn) !== i) ctx.addIssue({ code: "custom", path: [i], message: `${arn} is given twice` });
    });
  });

/** S3 and EBS both take at most 36,500 days (100 years) of retention. */
const MAX_LOCK_DAYS = 36_500;
const lockMode = z.enum(["governance", "compliance"], { error: 'either "governance" or "compliance"' });

const booleanish = z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")]);
const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const SettingsSchema = z
  .object({
    namePrefix: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,29}$/, "lower-case letters, digits and '-', starting with a letter, at most 30 characters")
      .default("tidemark"),
    tasksEnabled: booleanish.default(true),
    invokeAllowList: z
      .union([z.array(z.string()), z.string().transform((s) => s.split(",").map((a) => a.trim()).filter(Boolean))])
      .pipe(z.array(z.string().regex(lambdaArn, "a Lambda function ARN")))
      .default([]),
    snapshotRetentionDays: integer(1, 3650).default(30),
    pointInTimeDays: integer(0, 3650).default(DEFAULT_POINT_IN_TIME_DAYS),
    backup: booleanish.default(false),
    volumeSnapshots: booleanish.default(false),
    ebsKmsKeyArn: z.string().regex(/^arn:aws[\w-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/, "a KMS key ARN").optional(),
    applierConcurrency: integer(2, 1000).default(10),
    applierTimeoutSeconds: integer(10, 900).default(120),
    applierMemoryMiB: integer(256, 10240).default(1024),
    maxReceiveCount: integer(1, 1000).default(REPLICATION_QUEUE.maxReceiveCount),
    noncurrentVersionDays: integer(1, 3650).default(30),
    maxMessageAgeSeconds: integer(60, 1_209_600).default(300),
    // CloudWatch evaluates an alarm over at most 7 days: one hourly datapoint per hour of the window.
    drillMaxAgeHours: integer(0, 168).default(48),
    alarmTopicArn: z.string().regex(/^arn:aws[\w-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$/, "an SNS topic ARN").optional(),
    agentUser: booleanish.default(false),
    agentRoleTrust: principal.optional(),
    hosts: Hosts.default([]),
    markerSenders: MarkerSenders.optional(),
    // Folded into a statement id (letters and digits only) and the lookups' physical ids.
    markerSendersRefresh: z
      .string()
      .regex(/^[A-Za-z0-9]{1,32}$/, "letters and digits, at most 32 (today's date, e.g. 20261201, will do): any new value looks the senders' ids up again")
      .optional(),
    retainData: booleanish.default(true),
    immutableDays: integer(0, MAX_LOCK_DAYS).default(0),
    immutableMode: lockMode.default("governance"),
    snapshotLockDays: integer(0, MAX_LOCK_DAYS).default(0),
    snapshotLockMode: lockMode.default("governance"),
  })
  .strict()
  .superRefine((settings, ctx) => {
    if (settings.ebsKmsKeyArn !== undefined && !settings.volumeSnapshots) {
      ctx.addIssue({ code: "custom", path: ["ebsKmsKeyArn"], message: "an EBS snapshot key is only used by volume snapshots: set tidemark:volumeSnapshots=true too" });
    }
    // Snapshots on the versioned bucket name object versions: those must outlive the snapshots.
    if (settings.snapshotRetentionDays > settings.noncurrentVersionDays) {
      ctx.addIssue({
        code: "custom",
        path: ["snapshotRetentionDays"],
        message: `${settings.snapshotRetentionDays} days is longer than noncurrentVersionDays (${settings.noncurrentVersionDays}): snapshots name object versions, which would expire first; raise tidemark:noncurrentVersionDays too`,
      });
    }
    if (settings.markerSendersRefresh !== undefined && settings.markerSenders === undefined) {
      ctx.addIssue({ code: "custom", path: ["markerSendersRefresh"], message: "refreshes the ids of tidemark:markerSenders, which is not set" });
    }
    lockProblems(settings, ctx);
    // The history names the versions a replace leaves behind: each must outlive the window, plus the day S3's lifecycle rounds to.
    if (settings.pointInTimeDays > 0 && settings.noncurrentVersionDays < settings.pointInTimeDays + 1) {
      ctx.addIssue({
        code: "custom",
        path: ["pointInTimeDays"],
        message: `a ${settings.pointInTimeDays}-day protection window needs noncurrentVersionDays of at least ${settings.pointInTimeDays + 1} (it is ${settings.noncurrentVersionDays}): point-in-time history reads replaced content from the versions the bucket keeps, which would expire inside the window; raise tidemark:noncurrentVersionDays too`,
      });
    }
  });

/** Object Lock and EBS snapshot lock settings that would not do what they say. */
function lockProblems(settings: { immutableDays: number; noncurrentVersionDays: number; retainData: boolean; snapshotLockDays: number; volumeSnapshots: boolean }, ctx: z.RefinementCtx): void {
  // Lifecycle cannot expire a locked version: it would stay until its lock ends, not noncurrentVersionDays.
  if (settings.immutableDays > settings.noncurrentVersionDays) {
    ctx.addIssue({
      code: "custom",
      path: ["immutableDays"],
      message: `${settings.immutableDays} days is longer than noncurrentVersionDays (${settings.noncurrentVersionDays}): S3 lifecycle cannot expire a locked version, so old versions would be kept ${settings.immutableDays} days, not ${settings.noncurrentVersionDays}; raise tidemark:noncurrentVersionDays to at least ${settings.immutableDays}`,
    });
  }
  if (settings.immutableDays > 0 && !settings.retainData) {
    ctx.addIssue({
      code: "custom",
      path: ["retainData"],
      message: "false cannot work with Object Lock (tidemark:immutableDays > 0): locked versions cannot be deleted with the stack; keep tidemark:retainData=true",
    });
  }
  if (settings.snapshotLockDays > 0 && !settings.volumeSnapshots) {
    ctx.addIssue({ code: "custom", path: ["snapshotLockDays"], message: "EBS snapshot locks apply to the snapshots of ebs-snapshot markers: set tidemark:volumeSnapshots=true too" });
  }
}

/**
 * Compliance mode asked for without its days would silently lock nothing. (Governance is the default, which
 * the stack's own second parse of already parsed settings also passes: it cannot tell it was asked for.)
 */
const MODE_NEEDS_DAYS = [
  ["immutableMode", "immutableDays"],
  ["snapshotLockMode", "snapshotLockDays"],
] as const;

export const SETTING_KEYS = Object.keys(SettingsSchema.shape) as readonly (keyof TidemarkSettings)[];

export class SettingsError extends Error {
  override name = "SettingsError";
}

/** Settings from loose values (context strings or typed props), defaults filled in. */
export function parseSettings(values: Record<string, unknown>): TidemarkSettings {
  const result = SettingsSchema.safeParse(values);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue?.path.join(".") || "settings";
    const message = issue?.code === "unrecognized_keys" ? `unknown setting(s) ${issue.keys.join(", ")} (known: ${SETTING_KEYS.join(", ")})` : issue?.message;
    throw new SettingsError(`tidemark setting ${key}: ${message ?? "invalid"}`);
  }
  for (const [mode, days] of MODE_NEEDS_DAYS) {
    if (values[mode] === "compliance" && result.data[days] === 0) {
      throw new SettingsError(`tidemark setting ${mode}: locks nothing while ${days} is 0; set tidemark:${days} too`);
    }
  }
  return Object.freeze(result.data);
}

/**
 * Settings from CDK context: each key under the `tidemark:` prefix, so
 * `-c tidemark:backup=true` or `"tidemark:backup": true` in cdk.json.
 */
export function settingsFromContext(tryGetContext: (key: string) => unknown, contextKeys: readonly string[]): TidemarkSettings {
  const values: Record<string, unknown> = {};
  for (const key of contextKeys) {
    if (!key.startsWith("tidemark:")) continue;
    values[key.slice("tidemark:".length)] = tryGetContext(key);
  }
  return parseSettings(values);
}
