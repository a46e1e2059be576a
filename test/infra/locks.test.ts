// The optional hard guarantees on AWS: S3 Object Lock on the target bucket
// (tidemark:immutableDays / immutableMode) and EBS snapshot lock
// (tidemark:snapshotLockDays / snapshotLockMode). Neither the applier nor any
// agent or host role may lift or change a lock.

import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import type { CfnBucket } from "aws-cdk-lib/aws-s3";
import { describe, expect, it } from "vitest";
import { parseSettings, SettingsError, settingsFromContext, type TidemarkSettings } from "../../infra/settings.ts";
import { TidemarkStack } from "../../infra/stack.ts";

function synthStack(settings: Partial<TidemarkSettings> = {}) {
  const stack = new TidemarkStack(new App({ context: { "aws:cdk:bundling-stacks": [] } }), "Tidemark", { settings });
  return { stack, template: Template.fromStack(stack) };
}

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };
type Resource = { Type: string; Properties: Record<string, unknown> };

/** Every Allow statement of every identity policy in the template, with where it is. */
function allowStatements(template: Template): { where: string; statement: Statement }[] {
  const found: { where: string; statement: Statement }[] = [];
  for (const type of ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"]) {
    for (const [id, resource] of Object.entries(template.findResources(type)) as [string, Resource][]) {
      const statements = (resource.Properties.PolicyDocument as { Statement: Statement[] }).Statement;
      for (const statement of statements) if (statement.Effect === "Allow") found.push({ where: id, statement });
    }
  }
  for (const [id, resource] of Object.entries(template.findResources("AWS::IAM::Role")) as [string, Resource][]) {
    for (const policy of (resource.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[] | undefined) ?? []) {
      for (const statement of policy.PolicyDocument.Statement) if (statement.Effect === "Allow") found.push({ where: id, statement });
    }
  }
  return found;
}

/** IAM's action matching: `*` and `?` wildcards, case-insensitive. */
function grants(pattern: string, action: string): boolean {
  const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
  return regex.test(action);
}

/** What would let a principal remove a version or snapshot, or shorten, lift or work around a lock. */
const LOCK_CHANGING_ACTIONS = [
  "s3:DeleteObjectVersion",
  "s3:BypassGovernanceRetention",
  "s3:PutObjectRetention",
  "s3:PutObjectLegalHold",
  "s3:PutBucketObjectLockConfiguration",
  "ec2:UnlockSnapshot",
  "ec2:DeleteSnapshot",
];

const everything: Partial<TidemarkSettings> = {
  immutableDays: 14,
  immutableMode: "compliance",
  volumeSnapshots: true,
  snapshotLockDays: 30,
  snapshotLockMode: "compliance",
  hosts: [{ name: "web-1", sets: ["www"] }],
  agentUser: true,
  agentRoleTrust: "123456789012",
  backup: true,
  markerSenders: ["arn:aws:iam::123456789012:role/ops"],
};

describe("S3 Object Lock on the target bucket", () => {
  it("is off by default: no Object Lock configuration", () => {
    const { stack, template } = synthStack();
    const bucket = template.findResources("AWS::S3::Bucket")[stack.getLogicalId(stack.target.bucket.node.defaultChild as CfnBucket)] as Resource;
    expect(bucket.Properties.ObjectLockEnabled).toBeUndefined();
    expect(bucket.Properties.ObjectLockConfiguration).toBeUndefined();
  });

  it.each([
    ["governance", "GOVERNANCE"],
    ["compliance", "COMPLIANCE"],
  ] as const)("with immutableDays, locks every new version of the target bucket in %s mode for that many days", (mode, cfnMode) => {
    const { stack, template } = synthStack({ immutableDays: 7, immutableMode: mode });
    const buckets = template.findResources("AWS::S3::Bucket") as Record<string, Resource>;
    const target = buckets[stack.getLogicalId(stack.target.bucket.node.defaultChild as CfnBucket)];
    expect(target?.Properties).toMatchObject({
      ObjectLockEnabled: true,
      ObjectLockConfiguration: { ObjectLockEnabled: "Enabled", Rule: { DefaultRetention: { Mode: cfnMode, Days: 7 } } },
      VersioningConfiguration: { Status: "Enabled" },
    });
    // The access-log bucket stays unlocked: S3 delivers no server access logs into a bucket with Object Lock.
    const others = Object.entries(buckets).filter(([, b]) => b !== target);
    expect(others.map(([, b]) => b.Properties.ObjectLockEnabled)).toEqual([undefined]);
  });

  it("keeps governance as the default mode", () => {
    expect(parseSettings({ immutableDays: "3" })).toMatchObject({ immutableDays: 3, immutableMode: "governance" });
  });
});

describe("EBS snapshot lock", () => {
  it("passes the lock to the applier and lets it lock (never unlock) only snapshots tagged as tidemark's", () => {
    const { template } = synthStack({ volumeSnapshots: true, snapshotLockDays: 30, snapshotLockMode: "compliance" });
    const fn = Object.values(template.findResources("AWS::Lambda::Function", { Properties: { Handler: "index.handler" } })) as Resource[];
    expect((fn[0]?.Properties.Environment as { Variables: Record<string, unknown> }).Variables).toMatchObject({
      TIDEMARK_SNAPSHOT_LOCK_DAYS: "30",
      TIDEMARK_SNAPSHOT_LOCK_MODE: "compliance",
    });
    const lock = allowStatements(template).filter(({ statement }) => [statement.Action].flat().includes("ec2:LockSnapshot"));
    expect(lock).toHaveLength(1);
    expect(lock[0]?.where).toMatch(/^ApplierRole/);
    expect(lock[0]?.statement.Action).toBe("ec2:LockSnapshot");
    expect(JSON.stringify(lock[0]?.statement.Resource)).toContain("::snapshot/*");
    expect(lock[0]?.statement.Condition).toEqual({ StringLike: { "aws:ResourceTag/tidemark:set": "*" } });
  });

  it("is absent by default: no LockSnapshot permission, no lock settings for the applier", () => {
    const { template } = synthStack({ volumeSnapshots: true });
    expect(allowStatements(template).some(({ statement }) => [statement.Action].flat().some((a) => grants(a, "ec2:LockSnapshot")))).toBe(false);
    expect(JSON.stringify(template.findResources("AWS::Lambda::Function"))).not.toContain("TIDEMARK_SNAPSHOT_LOCK");
  });
});

describe("nobody the stack creates can change a lock", () => {
  it.each<[string, Partial<TidemarkSettings>]>([
    ["the defaults", {}],
    ["every lock and role on", everything],
  ])("no identity policy grants DeleteObjectVersion, BypassGovernanceRetention, PutObjectRetention, PutObjectLegalHold, PutBucketObjectLockConfiguration, UnlockSnapshot or DeleteSnapshot (%s)", (_label, settings) => {
    const statements = allowStatements(synthStack(settings).template);
    expect(statements.length).toBeGreaterThan(5);
    const offending = statements.flatMap(({ where, statement }) =>
      [statement.Action].flat().flatMap((pattern) => LOCK_CHANGING_ACTIONS.filter((action) => grants(pattern, action)).map((action) => `${where}: ${pattern} grants ${action}`)),
    );
    expect(offending).toEqual([]);
  });

  it("the check itself sees a wildcard that would grant them", () => {
    expect(grants("s3:Put*", "s3:PutObjectRetention")).toBe(true);
    expect(grants("s3:*", "s3:BypassGovernanceRetention")).toBe(true);
    expect(grants("ec2:*Snapshot", "ec2:UnlockSnapshot")).toBe(true);
    expect(grants("s3:PutObject", "s3:PutObjectRetention")).toBe(false);
  });
});

describe("lock settings", () => {
  it("are read from context, strings included", () => {
    const context: Record<string, unknown> = {
      "tidemark:immutableDays": "10",
      "tidemark:immutableMode": "compliance",
      "tidemark:volumeSnapshots": "true",
      "tidemark:snapshotLockDays": "90",
      "tidemark:snapshotLockMode": "governance",
    };
    expect(settingsFromContext((key) => context[key], Object.keys(context))).toMatchObject({
      immutableDays: 10,
      immutableMode: "compliance",
      snapshotLockDays: 90,
      snapshotLockMode: "governance",
    });
  });

  it.each([
    [{ immutableDays: -1 }, /tidemark setting immutableDays: /],
    [{ immutableDays: 36_501, noncurrentVersionDays: 3650 }, /tidemark setting immutableDays: /],
    [{ immutableDays: 7, immutableMode: "legal" }, /tidemark setting immutableMode: either "governance" or "compliance"/],
    [{ immutableMode: "compliance" }, /tidemark setting immutableMode: locks nothing while immutableDays is 0; set tidemark:immutableDays too/],
    [{ immutableDays: 60 }, /tidemark setting immutableDays: 60 days is longer than noncurrentVersionDays \(30\): S3 lifecycle cannot expire a locked version/],
    [{ immutableDays: 7, retainData: false }, /tidemark setting retainData: false cannot work with Object Lock/],
    [{ snapshotLockDays: 30 }, /tidemark setting snapshotLockDays: EBS snapshot locks apply to the snapshots of ebs-snapshot markers: set tidemark:volumeSnapshots=true too/],
    [{ volumeSnapshots: true, snapshotLockMode: "compliance" }, /tidemark setting snapshotLockMode: locks nothing while snapshotLockDays is 0/],
    [{ volumeSnapshots: true, snapshotLockDays: 7, snapshotLockMode: "Compliance" }, /tidemark setting snapshotLockMode: either "governance" or "compliance"/],
  ])("refuse %j, naming the key and why", (values, message) => {
    expect(() => parseSettings(values)).toThrow(SettingsError);
    expect(() => parseSettings(values)).toThrow(message);
  });

  it("pass again through the stack once parsed, as infra/app.ts hands them over", () => {
    for (const values of [{}, { immutableDays: 7, immutableMode: "compliance" }, { volumeSnapshots: true, snapshotLockDays: 3, snapshotLockMode: "compliance" }]) {
      expect(synthStack(parseSettings(values)).stack.settings).toEqual(parseSettings(values));
    }
  });

  it("allow a lock as long as the noncurrent versions are kept", () => {
    expect(parseSettings({ immutableDays: 90, noncurrentVersionDays: 90 })).toMatchObject({ immutableDays: 90 });
  });
});
