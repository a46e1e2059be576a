// cdk-nag's AwsSolutions rules over the stack, every feature on and off:
// no finding left unacknowledged, and every acknowledgement says why.

import { App, Stack, Validations } from "aws-cdk-lib";
import { Bucket } from "aws-cdk-lib/aws-s3";
import { AwsSolutionsChecks } from "cdk-nag";
import type { IConstruct } from "constructs";
import { describe, expect, it } from "vitest";
import { TidemarkStack } from "../../infra/stack.ts";
import type { TidemarkSettings } from "../../infra/settings.ts";

function findings(stack: Stack): string[] {
  const report = new AwsSolutionsChecks(stack.node.root, { verbose: false }).validateScope(stack);
  return report.violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName} at ${r.resourceLogicalId}: ${v.description.slice(0, 120)}`));
}

function acknowledgements(root: IConstruct): { path: string; id: string; reason: string }[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>))
      .map(([id, reason]) => ({ path: c.node.path, id, reason })),
  );
}

const noBundling = { context: { "aws:cdk:bundling-stacks": [] } };

describe("cdk-nag AwsSolutions", () => {
  it.each<[string, Partial<TidemarkSettings>]>([
    ["the defaults", {}],
    [
      "every option on",
      {
        backup: true,
        volumeSnapshots: true,
        agentUser: true,
        agentRoleTrust: "arn:aws:iam::123456789012:role/onprem",
        markerSenders: ["arn:aws:iam::123456789012:role/ops", "arn:aws:iam::123456789012:user/alice"],
        invokeAllowList: ["arn:aws:lambda:us-east-1:123456789012:function:hook"],
        alarmTopicArn: "arn:aws:sns:us-east-1:123456789012:ops",
        retainData: false,
        tasksEnabled: false,
      },
    ],
    [
      "Object Lock and EBS snapshot lock in compliance mode",
      {
        immutableDays: 14,
        immutableMode: "compliance",
        volumeSnapshots: true,
        snapshotLockDays: 30,
        snapshotLockMode: "compliance",
        hosts: [{ name: "web-1", sets: ["www"] }],
      },
    ],
    [
      "per-host roles with volume snapshots",
      {
        volumeSnapshots: true,
        hosts: [
          { name: "web-1", sets: ["www", "db"] },
          { name: "files", sets: ["docs"], trust: "arn:aws:iam::123456789012:role/onprem-files" },
        ],
        markerSenders: ["arn:aws:iam::123456789012:role/ops"],
      },
    ],
  ])("finds nothing unacknowledged with %s", (_label, settings) => {
    const app = new App(noBundling);
    const stack = new TidemarkStack(app, "Tidemark", { settings });
    expect(findings(stack)).toEqual([]);
    const acks = acknowledgements(app);
    expect(acks.length).toBeGreaterThan(0);
    for (const ack of acks) expect(ack.reason.length, `${ack.id} on ${ack.path}`).toBeGreaterThan(40);
  });

  it("does report what it should (the check is live)", () => {
    const app = new App(noBundling);
    const stack = new Stack(app, "Insecure");
    new Bucket(stack, "Open");
    expect(findings(stack).some((f) => f.startsWith("AwsSolutions-S1") || f.startsWith("AwsSolutions-S10"))).toBe(true);
  });
});
