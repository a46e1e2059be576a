// The stack's decisions, one assertion each, on the synthesized template.

import type { Stack } from "aws-cdk-lib";
import { App } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import type { CfnBucket } from "aws-cdk-lib/aws-s3";
import type { CfnQueue } from "aws-cdk-lib/aws-sqs";
import { beforeAll, describe, expect, it } from "vitest";
import { deadLetterQueueAttributes, replicationQueueAttributes, replicationQueueNames } from "../../contract/queue.ts";
import { STACK_OUTPUT } from "../../contract/stack-outputs.ts";
import { parseSettings, SettingsError, settingsFromContext } from "../../infra/settings.ts";
import { TidemarkStack } from "../../infra/stack.ts";
import type { TidemarkSettings } from "../../infra/settings.ts";

/** A stack from settings; bundling the applier (esbuild) only where a test needs the asset. */
export function synthStack(settings: Partial<TidemarkSettings> = {}, options: { bundle?: boolean } = {}) {
  const app = new App(options.bundle ? {} : { context: { "aws:cdk:bundling-stacks": [] } });
  const stack = new TidemarkStack(app, "Tidemark", { settings });
  return { app, stack, template: Template.fromStack(stack) };
}

type Resource = { Type: string; Properties: Record<string, unknown> };

function only(template: Template, type: string, properties: Record<string, unknown> = {}): [string, Resource] {
  const found = Object.entries(template.findResources(type, { Properties: properties })) as [string, Resource][];
  expect(found, `exactly one ${type} matching ${JSON.stringify(properties)}`).toHaveLength(1);
  return found[0] as [string, Resource];
}

const logicalId = (stack: Stack, cfn: unknown) => stack.getLogicalId(cfn as CfnBucket);

describe("TidemarkStack with its defaults", () => {
  let stack: TidemarkStack;
  let template: Template;
  let queueId: string;
  let dlqId: string;
  let bucketId: string;

  beforeAll(() => {
    ({ stack, template } = synthStack({}, { bundle: true }));
    queueId = logicalId(stack, stack.replication.queue.node.defaultChild as CfnQueue);
    dlqId = logicalId(stack, stack.replication.deadLetterQueue.node.defaultChild as CfnQueue);
    bucketId = logicalId(stack, stack.target.bucket.node.defaultChild);
  });

  it("makes the replication queue FIFO, high-throughput, 1 MiB, encrypted", () => {
    template.hasResourceProperties("AWS::SQS::Queue", {
      QueueName: "tidemark.fifo",
      FifoQueue: true,
      DeduplicationScope: "messageGroup",
      FifoThroughputLimit: "perMessageGroupId",
      MaximumMessageSize: 1_048_576,
      SqsManagedSseEnabled: true,
      ContentBasedDeduplication: true,
    });
  });

  it("sends messages that keep failing to a FIFO dead-letter queue after 5 receives", () => {
    const [, dlq] = only(template, "AWS::SQS::Queue", { QueueName: "tidemark-dlq.fifo" });
    expect(dlq.Properties).toMatchObject({ FifoQueue: true, SqsManagedSseEnabled: true });
    const [, queue] = only(template, "AWS::SQS::Queue", { QueueName: "tidemark.fifo" });
    expect(queue.Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: { "Fn::GetAtt": [dlqId, "Arn"] }, maxReceiveCount: 5 });
  });

  it("creates both queues as the shared definition the local cloud creates them (contract/queue.ts)", () => {
    // CloudFormation's properties are SQS's attribute names, typed; the local cloud sends them as CreateQueue strings.
    const asAttributes = (properties: Record<string, unknown>, names: readonly string[]) =>
      Object.fromEntries(names.map((name) => [name, properties[name] === undefined ? undefined : String(properties[name])]));
    const [, dlq] = only(template, "AWS::SQS::Queue", { QueueName: "tidemark-dlq.fifo" });
    const shared = deadLetterQueueAttributes();
    expect(asAttributes(dlq.Properties, Object.keys(shared))).toEqual(shared);
    const [, queue] = only(template, "AWS::SQS::Queue", { QueueName: "tidemark.fifo" });
    const { RedrivePolicy, ...attributes } = replicationQueueAttributes({ visibilityTimeoutSeconds: Number(queue.Properties.VisibilityTimeout), deadLetterTargetArn: "dlq" });
    expect(asAttributes(queue.Properties, Object.keys(attributes))).toEqual(attributes);
    expect(queue.Properties.RedrivePolicy).toMatchObject({ maxReceiveCount: (JSON.parse(RedrivePolicy ?? "{}") as { maxReceiveCount: number }).maxReceiveCount });
    expect(replicationQueueNames("tidemark")).toEqual({ queue: queue.Properties.QueueName, deadLetterQueue: dlq.Properties.QueueName });
  });

  it("keeps a message invisible for at least six times the applier's timeout", () => {
    const [, queue] = only(template, "AWS::SQS::Queue", { QueueName: "tidemark.fifo" });
    const [, fn] = only(template, "AWS::Lambda::Function", { Handler: "index.handler" });
    expect(queue.Properties.VisibilityTimeout).toBeGreaterThanOrEqual(6 * (fn.Properties.Timeout as number));
  });

  it("runs the applier on nodejs24.x, arm64, with its bucket in the environment", () => {
    template.hasResourceProperties("AWS::Lambda::Function", {
      Handler: "index.handler",
      Runtime: "nodejs24.x",
      Architectures: ["arm64"],
      Timeout: 120,
      Environment: { Variables: Match.objectLike({ TIDEMARK_BUCKET: { Ref: bucketId }, TIDEMARK_METRICS_NAMESPACE: "Tidemark/tidemark" }) },
    });
  });

  it("feeds the applier batches of at most 10, reporting partial batch failures, with a concurrency cap", () => {
    template.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
      EventSourceArn: { "Fn::GetAtt": [queueId, "Arn"] },
      BatchSize: 10,
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      ScalingConfig: { MaximumConcurrency: 10 },
    });
  });

  it("versions, encrypts and closes the target bucket, and expires staging and old versions", () => {
    const [, bucket] = only(template, "AWS::S3::Bucket", { VersioningConfiguration: { Status: "Enabled" } });
    expect(bucket.Properties).toMatchObject({
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      LoggingConfiguration: { DestinationBucketName: expect.anything(), LogFilePrefix: "target/" },
    });
    const rules = (bucket.Properties.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
    expect(rules).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Prefix: "staging/", ExpirationInDays: 15, Status: "Enabled" }),
        expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: "Enabled" }),
        expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 } }),
      ]),
    );
    expect(template.findResources("AWS::S3::Bucket")[bucketId]?.DeletionPolicy).toBe("Retain");
  });

  it("denies access without HTTPS to the bucket and both queues", () => {
    const denyInsecure = Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } });
    template.hasResourceProperties("AWS::S3::BucketPolicy", {
      Bucket: { Ref: bucketId },
      PolicyDocument: { Statement: Match.arrayWith([denyInsecure]) },
    });
    for (const id of [queueId, dlqId]) {
      template.hasResourceProperties("AWS::SQS::QueuePolicy", {
        Queues: [{ Ref: id }],
        PolicyDocument: { Statement: Match.arrayWith([denyInsecure]) },
      });
    }
  });

  it("gives agents exactly: send to the queue, write staging/, announce received markers, read state/, tasks/, snapshots/, data/, preserved/, blocks/ and drills/", () => {
    const [, policy] = only(template, "AWS::IAM::ManagedPolicy");
    const objects = (suffix: string) => ({ "Fn::Join": ["", [{ "Fn::GetAtt": [bucketId, "Arn"] }, `/${suffix}`]] });
    expect((policy.Properties.PolicyDocument as { Statement: unknown[] }).Statement).toEqual([
      { Sid: "SendToReplicationQueue", Effect: "Allow", Action: ["sqs:SendMessage", "sqs:GetQueueAttributes"], Resource: { "Fn::GetAtt": [queueId, "Arn"] } },
      { Sid: "WriteStagingObjects", Effect: "Allow", Action: ["s3:PutObject", "s3:AbortMultipartUpload"], Resource: objects("staging/*") },
      {
        Sid: "ReadStatusTasksSnapshots",
        Effect: "Allow",
        Action: ["s3:GetObject", "s3:GetObjectVersion"],
        Resource: [objects("state/*"), objects("tasks/*"), objects("snapshots/*"), objects("data/*"), objects("preserved/*"), objects("blocks/*"), objects("drills/*"), objects("history/*")],
      },
      {
        Sid: "ListStatusTasksSnapshots",
        Effect: "Allow",
        Action: "s3:ListBucket",
        Resource: { "Fn::GetAtt": [bucketId, "Arn"] },
        Condition: { StringLike: { "s3:prefix": ["state/*", "tasks/*", "snapshots/*", "data/*", "preserved/*", "blocks/*", "drills/*", "history/*"] } },
      },
      { Sid: "AnnounceReceivedTasks", Effect: "Allow", Action: "events:PutEvents", Resource: { "Fn::GetAtt": [only(template, "AWS::Events::EventBus")[0], "Arn"] } },
    ]);
    expect(template.findResources("AWS::IAM::User")).toEqual({});
  });

  it("lets the applier touch its bucket's objects and its event bus, and invoke nothing", () => {
    const statements = applierStatements(template);
    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"] }),
        expect.objectContaining({ Action: ["s3:ListBucket", "s3:GetBucketVersioning"] }),
        expect.objectContaining({ Action: "events:PutEvents" }),
      ]),
    );
    const actions = statements.flatMap((s) => [s.Action].flat());
    expect(actions.filter((a) => a.startsWith("lambda:") || a.startsWith("backup:") || a.startsWith("ebs:") || a === "iam:PassRole")).toEqual([]);
    expect(template.findResources("AWS::Backup::BackupVault")).toEqual({});
  });

  it("alarms on lag, dead letters, applier errors, sets out of sync, drills and failed snapshot checks, and has a dashboard", () => {
    const alarms = Object.values(template.findResources("AWS::CloudWatch::Alarm")) as Resource[];
    expect(alarms.map((a) => a.Properties.MetricName).sort()).toEqual([
      "ApproximateAgeOfOldestMessage",
      "ApproximateNumberOfMessagesVisible",
      "DrillFailed",
      "DrillPassed",
      "Errors",
      "SetsOutOfSync",
      "SnapshotChecksFailed",
    ]);
    const outOfSync = alarms.find((a) => a.Properties.MetricName === "SetsOutOfSync");
    expect(outOfSync?.Properties).toMatchObject({ Namespace: "Tidemark/tidemark", Threshold: 1 });
    // The applier puts SnapshotChecksFailed (one per failed snapshot) in the namespace its environment names.
    expect(alarms.find((a) => a.Properties.MetricName === "SnapshotChecksFailed")?.Properties).toMatchObject({
      Namespace: "Tidemark/tidemark",
      Statistic: "Sum",
      Threshold: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      TreatMissingData: "notBreaching",
    });
    expect(alarms.find((a) => a.Properties.MetricName === "ApproximateAgeOfOldestMessage")?.Properties.Threshold).toBe(300);
    expect(alarms.every((a) => a.Properties.AlarmActions === undefined)).toBe(true);
    template.resourceCountIs("AWS::CloudWatch::Dashboard", 1);
  });

  it("alarms when no drill passed within tidemark:drillMaxAgeHours (48 by default): every hour of the window without a DrillPassed, missing data breaching", () => {
    const [, alarm] = only(template, "AWS::CloudWatch::Alarm", { MetricName: "DrillPassed" });
    expect(alarm.Properties).toMatchObject({
      Namespace: "Tidemark/tidemark",
      Statistic: "Sum",
      Period: 3600,
      EvaluationPeriods: 48,
      DatapointsToAlarm: 48,
      Threshold: 1,
      ComparisonOperator: "LessThanThreshold",
      TreatMissingData: "breaching",
    });
    const custom = synthStack({ drillMaxAgeHours: 24 }).template;
    expect(only(custom, "AWS::CloudWatch::Alarm", { MetricName: "DrillPassed" })[1].Properties).toMatchObject({ EvaluationPeriods: 24, DatapointsToAlarm: 24 });
    expect(synthStack({ drillMaxAgeHours: 0 }).template.findResources("AWS::CloudWatch::Alarm", { Properties: { MetricName: "DrillPassed" } })).toEqual({});
    expect(() => parseSettings({ drillMaxAgeHours: 169 })).toThrow(/drillMaxAgeHours/);
    expect(settingsFromContext((key) => (key === "tidemark:drillMaxAgeHours" ? "12" : undefined), ["tidemark:drillMaxAgeHours"]).drillMaxAgeHours).toBe(12);
  });

  it("outputs what `tidemark init` reads", () => {
    const outputs = template.findOutputs("*");
    for (const name of [STACK_OUTPUT.queueUrl, STACK_OUTPUT.bucket, STACK_OUTPUT.region, STACK_OUTPUT.agentPolicyArn, STACK_OUTPUT.tasksEnabled]) {
      expect(outputs, name).toHaveProperty(name);
    }
    expect(outputs[STACK_OUTPUT.queueUrl]?.Value).toEqual({ Ref: queueId });
    expect(outputs[STACK_OUTPUT.bucket]?.Value).toEqual({ Ref: bucketId });
    expect(outputs[STACK_OUTPUT.tasksEnabled]?.Value).toBe("true");
  });
});

type Statement = { Action: string | string[]; Resource: unknown; Effect: string };

function applierStatements(template: Template): Statement[] {
  const policies = Object.values(template.findResources("AWS::IAM::Policy")) as Resource[];
  const applier = policies.filter((p) => JSON.stringify(p.Properties.Roles).includes("ApplierRole"));
  expect(applier).toHaveLength(1);
  return (applier[0]?.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
}

describe("TidemarkStack settings", () => {
  it("passes the protection window (tidemark:pointInTimeDays, 7 by default) to the applier", () => {
    synthStack().template.hasResourceProperties("AWS::Lambda::Function", { Environment: { Variables: Match.objectLike({ TIDEMARK_POINT_IN_TIME_DAYS: "7" }) } });
    // Replaced content is read from noncurrent versions: they are kept a day past the window.
    const { template: longer } = synthStack({ pointInTimeDays: 30, noncurrentVersionDays: 31 });
    longer.hasResourceProperties("AWS::Lambda::Function", { Environment: { Variables: Match.objectLike({ TIDEMARK_POINT_IN_TIME_DAYS: "30" }) } });
    expect(() => synthStack({ pointInTimeDays: -1 })).toThrow(/pointInTimeDays/);
    expect(parseSettings({ pointInTimeDays: 0, noncurrentVersionDays: 1, snapshotRetentionDays: 1 })).toMatchObject({ pointInTimeDays: 0, noncurrentVersionDays: 1 });
    expect(parseSettings({ pointInTimeDays: 29 })).toMatchObject({ pointInTimeDays: 29, noncurrentVersionDays: 30 });
  });

  it("limits invoke to the allow-listed functions", () => {
    const allowed = ["arn:aws:lambda:eu-west-1:123456789012:function:quiesce-db", "arn:aws:lambda:eu-west-1:123456789012:function:notify:live"];
    const { template } = synthStack({ invokeAllowList: allowed });
    const invoke = applierStatements(template).filter((s) => [s.Action].flat().includes("lambda:InvokeFunction"));
    expect(invoke).toEqual([expect.objectContaining({ Action: "lambda:InvokeFunction", Resource: allowed })]);
    template.hasResourceProperties("AWS::Lambda::Function", {
      Environment: { Variables: Match.objectLike({ TIDEMARK_INVOKE_ALLOW: allowed.join(","), TIDEMARK_ACCOUNT: { Ref: "AWS::AccountId" } }) },
    });
  });

  it("adds a Backup vault, a role for AWS Backup, and only StartBackupJob and PassRole for the applier", () => {
    const { stack, template } = synthStack({ backup: true });
    template.resourceCountIs("AWS::Backup::BackupVault", 1);
    const vaultId = logicalId(stack, stack.actions.backupVault?.node.defaultChild);
    const roleId = logicalId(stack, stack.actions.backupRole?.node.defaultChild);
    const statements = applierStatements(template);
    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Action: "backup:StartBackupJob", Resource: { "Fn::GetAtt": [vaultId, "BackupVaultArn"] } }),
        expect.objectContaining({ Action: "iam:PassRole", Resource: { "Fn::GetAtt": [roleId, "Arn"] } }),
      ]),
    );
    template.hasResourceProperties("AWS::IAM::Role", {
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: "backup.amazonaws.com" } })] },
    });
  });

  it("grants the EBS direct APIs on snapshots only when volume snapshots are on", () => {
    const { template } = synthStack({ volumeSnapshots: true });
    const ebs = applierStatements(template).find((s) => [s.Action].flat().includes("ebs:StartSnapshot"));
    expect([ebs?.Action].flat().sort()).toEqual(
      ["ebs:CompleteSnapshot", "ebs:GetSnapshotBlock", "ebs:ListChangedBlocks", "ebs:ListSnapshotBlocks", "ebs:PutSnapshotBlock", "ebs:StartSnapshot"].sort(),
    );
    expect(JSON.stringify(ebs?.Resource)).toContain("::snapshot/*");
    expect(applierStatements(template).some((s) => [s.Action].flat().some((a) => String(a).startsWith("kms:")))).toBe(false);
  });

  it("encrypts EBS snapshots with the given key and grants the applier only that key", () => {
    const key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const { template } = synthStack({ volumeSnapshots: true, ebsKmsKeyArn: key });
    const kms = applierStatements(template).find((s) => [s.Action].flat().includes("kms:GenerateDataKeyWithoutPlaintext"));
    expect(kms?.Resource).toBe(key);
    template.hasResourceProperties("AWS::Lambda::Function", {
      Environment: { Variables: Match.objectLike({ TIDEMARK_EBS_KMS_KEY_ARN: key, TIDEMARK_VOLUME_SNAPSHOTS: "true" }) },
    });
    expect(() => synthStack({ ebsKmsKeyArn: key })).toThrow(/set tidemark:volumeSnapshots=true too/);
  });

  it("lets the agent read back only the EBS snapshots tidemark cut, and only with volume snapshots on", () => {
    const statement = (template: ReturnType<typeof synthStack>["template"]) => {
      const policies = Object.values(template.findResources("AWS::IAM::ManagedPolicy")) as { Properties: { PolicyDocument: { Statement: { Sid?: string; Action: unknown; Condition?: unknown }[] } } }[];
      return policies.flatMap((p) => p.Properties.PolicyDocument.Statement).find((st) => st.Sid === "ReadTidemarkEbsSnapshots");
    };
    expect(statement(synthStack({}).template)).toBeUndefined();
    const read = statement(synthStack({ volumeSnapshots: true }).template);
    expect([read?.Action].flat().sort()).toEqual(["ebs:GetSnapshotBlock", "ebs:ListSnapshotBlocks"]);
    expect(read?.Condition).toEqual({ StringLike: { "aws:ResourceTag/tidemark:set": "*" } });
  });

  it("creates an agent user and an assumable agent role on request, both with the agent policy", () => {
    const { stack, template } = synthStack({ agentUser: true, agentRoleTrust: "123456789012" });
    const policyRef = { Ref: logicalId(stack, stack.agentAccess.policy.node.defaultChild) };
    template.hasResourceProperties("AWS::IAM::User", { ManagedPolicyArns: [policyRef] });
    template.hasResourceProperties("AWS::IAM::Role", {
      ManagedPolicyArns: [policyRef],
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { AWS: Match.anyValue() } })] },
    });
    const outputs = template.findOutputs("*");
    expect(outputs).toHaveProperty(STACK_OUTPUT.agentRoleArn);
    expect(outputs).toHaveProperty(STACK_OUTPUT.agentUserName);
  });

  it("follows the timeout, concurrency, receive count and names it is given", () => {
    const { template } = synthStack({ namePrefix: "acme-repl", applierTimeoutSeconds: 300, applierConcurrency: 50, maxReceiveCount: 9 });
    template.hasResourceProperties("AWS::SQS::Queue", { QueueName: "acme-repl.fifo", VisibilityTimeout: 1800, RedrivePolicy: Match.objectLike({ maxReceiveCount: 9 }) });
    template.hasResourceProperties("AWS::Lambda::Function", { Timeout: 300 });
    template.hasResourceProperties("AWS::Lambda::EventSourceMapping", { ScalingConfig: { MaximumConcurrency: 50 } });
    template.hasResourceProperties("AWS::Events::EventBus", { Name: "acme-repl-events" });
  });

  it("notifies an alarm topic when given one, and deletes the data with the stack only when told", () => {
    const topic = "arn:aws:sns:eu-west-1:123456789012:ops";
    const { stack, template } = synthStack({ alarmTopicArn: topic, retainData: false });
    const alarms = Object.values(template.findResources("AWS::CloudWatch::Alarm")) as Resource[];
    expect(alarms.every((a) => JSON.stringify(a.Properties.AlarmActions) === JSON.stringify([topic]))).toBe(true);
    const bucketId = logicalId(stack, stack.target.bucket.node.defaultChild);
    expect(template.findResources("AWS::S3::Bucket")[bucketId]?.DeletionPolicy).toBe("Delete");
  });

  it("reads settings from tidemark: context keys, strings included", () => {
    const context: Record<string, unknown> = { "tidemark:backup": "true", "tidemark:applierConcurrency": "20", "tidemark:invokeAllowList": "arn:aws:lambda:us-east-1:123456789012:function:a, arn:aws:lambda:us-east-1:123456789012:function:b", "@aws-cdk/core:flag": true };
    const settings = settingsFromContext((key) => context[key], Object.keys(context));
    expect(settings).toMatchObject({ backup: true, applierConcurrency: 20, tasksEnabled: true, invokeAllowList: ["arn:aws:lambda:us-east-1:123456789012:function:a", "arn:aws:lambda:us-east-1:123456789012:function:b"] });
  });

  it.each([
    [{ applierConcurrency: 1 }, /tidemark setting applierConcurrency: .*2/],
    [{ invokeAllowList: ["my-function"] }, /tidemark setting invokeAllowList\.0: a Lambda function ARN/],
    [{ backupp: true }, /unknown setting\(s\) backupp \(known: namePrefix, /],
    [{ namePrefix: "Tide Mark" }, /tidemark setting namePrefix: lower-case letters/],
    [{ snapshotRetentionDays: 90 }, /tidemark setting snapshotRetentionDays: 90 days is longer than noncurrentVersionDays \(30\)/],
    [{ pointInTimeDays: 30 }, /tidemark setting pointInTimeDays: a 30-day protection window needs noncurrentVersionDays of at least 31 \(it is 30\)/],
    [{ pointInTimeDays: 10, noncurrentVersionDays: 10, snapshotRetentionDays: 10 }, /needs noncurrentVersionDays of at least 11 \(it is 10\)/],
  ])("refuses the settings %j, naming the key", (values, message) => {
    expect(() => parseSettings(values)).toThrow(SettingsError);
    expect(() => parseSettings(values)).toThrow(message);
    expect(() => new TidemarkStack(new App(), "T", { settings: values as Partial<TidemarkSettings> })).toThrow(message);
  });
});
