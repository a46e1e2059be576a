// `tidemark:markerSenders`: the listed principals' unique ids (looked up at
// deploy time, as SQS names senders by them) reach the applier's environment,
// the queue lets them send, and a value that is not an IAM role or user ARN of
// the stack's account fails the synth naming the setting.

import { App } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { describe, expect, it } from "vitest";
import { MARKER_SENDERS_ENV } from "../../lambdas/applier/ownership.ts";
import { parseSettings, SettingsError, settingsFromContext, type TidemarkSettings } from "../../infra/settings.ts";
import { TidemarkStack } from "../../infra/stack.ts";

const OPS = "arn:aws:iam::123456789012:role/ops";
const SSO = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123abcd";
const ALICE = "arn:aws:iam::123456789012:user/people/alice";

function synth(settings: Partial<TidemarkSettings>, env?: { account: string; region: string }) {
  const stack = new TidemarkStack(new App({ context: { "aws:cdk:bundling-stacks": [] } }), "Tidemark", { settings, ...(env ? { env } : {}) });
  return Template.fromStack(stack);
}

type Resource = { Properties: Record<string, unknown> };

/** The applier's value of the marker senders' variable, undefined when not set. */
function applierSenders(template: Template): unknown {
  const functions = Object.values(template.findResources("AWS::Lambda::Function", { Properties: { Description: Match.stringLikeRegexp("^tidemark applier") } })) as Resource[];
  expect(functions).toHaveLength(1);
  return (functions[0]?.Properties.Environment as { Variables: Record<string, unknown> }).Variables[MARKER_SENDERS_ENV];
}

describe("tidemark:markerSenders", () => {
  it("looks up each listed role's and user's unique id at deploy time and gives them, with the ARNs, to the applier", () => {
    const template = synth({ markerSenders: [OPS, SSO, ALICE], hosts: [{ name: "web-1", sets: ["www"] }] });
    const lookups = Object.entries(template.findResources("Custom::TidemarkMarkerSender")) as [string, Resource][];
    const calls = lookups.map(([, r]) => JSON.parse(String(r.Properties.Create)) as { action: string; parameters: Record<string, string>; outputPaths: string[] });
    expect(calls.map((c) => [c.action, c.parameters, c.outputPaths])).toEqual([
      ["GetRole", { RoleName: "ops" }, ["Role.RoleId"]],
      ["GetRole", { RoleName: "AWSReservedSSO_Admin_0123abcd" }, ["Role.RoleId"]],
      ["GetUser", { UserName: "alice" }, ["User.UserId"]],
    ]);
    const value = JSON.stringify(applierSenders(template));
    for (const [id, resource] of lookups) {
      const field = String(resource.Properties.Create).includes("GetRole") ? "Role.RoleId" : "User.UserId";
      expect(value).toContain(JSON.stringify({ "Fn::GetAtt": [id, field] }));
    }
    for (const arn of [OPS, SSO, ALICE]) expect(value).toContain(`\\"arn\\":\\"${arn}\\"`);
    // The look-up may read exactly the listed principals: each lookup's own policy (which it depends on), one action
    // on its one ARN; and no other policy of the stack grants an IAM read.
    const policies = template.findResources("AWS::IAM::Policy") as Record<string, Resource>;
    const expected = new Map([
      ["ops", OPS],
      ["AWSReservedSSO_Admin_0123abcd", SSO],
      ["alice", ALICE],
    ]);
    for (const [, resource] of lookups) {
      const call = JSON.parse(String(resource.Properties.Create)) as { action: string; parameters: Record<string, string> };
      const [policyId] = (resource as { DependsOn?: string[] }).DependsOn ?? [];
      expect((policies[policyId ?? ""]?.Properties.PolicyDocument as { Statement: unknown[] }).Statement).toEqual([
        { Action: `iam:${call.action}`, Effect: "Allow", Resource: expected.get(call.parameters.RoleName ?? call.parameters.UserName ?? "") },
      ]);
    }
    const iamReads = Object.values(policies).flatMap((p) => (p.Properties.PolicyDocument as { Statement: { Action: unknown; Resource: unknown }[] }).Statement.filter((st) => JSON.stringify(st.Action).includes('"iam:')));
    expect(iamReads.map((st) => st.Resource).sort()).toEqual([OPS, SSO, ALICE].sort());
  });

  it("lets the listed principals send to the replication queue (the queue's policy), and nothing else", () => {
    const template = synth({ markerSenders: [OPS, ALICE] });
    const policies = Object.values(template.findResources("AWS::SQS::QueuePolicy")) as Resource[];
    const statements = policies.flatMap((p) => (p.Properties.PolicyDocument as { Statement: { Sid?: string }[] }).Statement).filter((s) => s.Sid === "MarkerSendersMaySend");
    expect(statements).toEqual([{ Sid: "MarkerSendersMaySend", Effect: "Allow", Action: "sqs:SendMessage", Principal: { AWS: [OPS, ALICE] }, Resource: { "Fn::GetAtt": [expect.stringMatching(/^ReplicationQueue[0-9A-F]+$/), "Arn"] } }]);
  });

  it("looks the ids up again when tidemark:markerSendersRefresh changes: new lookup properties (CloudFormation updates them) and a rewritten queue grant", () => {
    type Call = { physicalResourceId: { id: string } };
    const lookup = (template: Template) => {
      const [resource] = Object.values(template.findResources("Custom::TidemarkMarkerSender")) as Resource[];
      return { create: JSON.parse(String(resource?.Properties.Create)) as Call, update: JSON.parse(String(resource?.Properties.Update)) as Call };
    };
    const sids = (template: Template) =>
      (Object.values(template.findResources("AWS::SQS::QueuePolicy")) as Resource[])
        .flatMap((p) => (p.Properties.PolicyDocument as { Statement: { Sid?: string }[] }).Statement)
        .map((s) => s.Sid)
        .filter((sid) => sid?.startsWith("MarkerSenders"));
    const plain = synth({ markerSenders: [OPS] });
    // Without the setting, what an earlier deploy made stays as it was.
    expect(lookup(plain).update.physicalResourceId.id).toBe(OPS);
    expect(sids(plain)).toEqual(["MarkerSendersMaySend"]);
    const refreshed = synth(parseSettings({ markerSenders: [OPS], markerSendersRefresh: "20261201" }));
    expect(lookup(refreshed).create.physicalResourceId.id).toBe(`${OPS}#20261201`);
    expect(lookup(refreshed).update.physicalResourceId.id).toBe(`${OPS}#20261201`);
    expect(sids(refreshed)).toEqual(["MarkerSendersMaySend20261201"]);
    expect(() => parseSettings({ markerSenders: [OPS], markerSendersRefresh: "2026-12-01" })).toThrow(/tidemark setting markerSendersRefresh: letters and digits, at most 32/);
    expect(() => parseSettings({ markerSendersRefresh: "20261201" })).toThrow(/tidemark setting markerSendersRefresh: refreshes the ids of tidemark:markerSenders, which is not set/);
  });

  it("fails the synth naming the setting when its ARNs would take the applier's environment over Lambda's 4 KB", () => {
    // IAM Identity Center roles: over 100 bytes of ARN each, beside a 21-byte id.
    const ssoRoles = (n: number) => Array.from({ length: n }, (_, i) => `${SSO}${String(i).padStart(2, "0")}`);
    expect(() => synth({ markerSenders: ssoRoles(30), hosts: [{ name: "web-1", sets: ["www"] }] })).toThrow(
      /^tidemark setting markerSenders: the applier's environment would take about \d+ bytes, over Lambda's limit of 4096; TIDEMARK_MARKER_SENDERS takes about \d+ of them: list fewer principals/,
    );
    expect(() => synth({ markerSenders: ssoRoles(12), hosts: [{ name: "web-1", sets: ["www"] }] })).not.toThrow();
  });

  it("is absent from the applier without the setting (the looser default), and an empty list for []", () => {
    const plain = synth({});
    expect(applierSenders(plain)).toBeUndefined();
    expect(Object.keys(plain.findResources("Custom::TidemarkMarkerSender"))).toEqual([]);
    const empty = synth({ markerSenders: [] });
    expect(applierSenders(empty)).toBe("[]");
    expect(Object.keys(empty.findResources("Custom::TidemarkMarkerSender"))).toEqual([]);
    expect(JSON.stringify(empty.findResources("AWS::SQS::QueuePolicy"))).not.toContain("MarkerSendersMaySend");
  });

  it("is read from context as a JSON array or comma-separated ARNs", () => {
    const json = settingsFromContext((key) => (key === "tidemark:markerSenders" ? JSON.stringify([OPS, ALICE]) : undefined), ["tidemark:markerSenders"]);
    expect(json.markerSenders).toEqual([OPS, ALICE]);
    const commas = settingsFromContext((key) => (key === "tidemark:markerSenders" ? `${OPS}, ${ALICE}` : undefined), ["tidemark:markerSenders"]);
    expect(commas.markerSenders).toEqual([OPS, ALICE]);
    expect(parseSettings({}).markerSenders).toBeUndefined();
  });

  it.each([
    [["ops"], /tidemark setting markerSenders\.0: ops is not an IAM role or user ARN \(arn:aws:iam::123456789012:role\/NAME/],
    [["arn:aws:iam::123456789012:policy/ops"], /tidemark setting markerSenders\.0: .* is not an IAM role or user ARN/],
    [["AROAOPS"], /tidemark setting markerSenders\.0: AROAOPS is not an IAM role or user ARN/],
    [["arn:aws:sts::123456789012:assumed-role/ops/alice"], /tidemark setting markerSenders\.0: .* is a role session; name the role, arn:aws:iam::123456789012:role\/ops with its path if it has one/],
    // What `aws sts get-caller-identity` prints for an IAM Identity Center user: the role's ARN has a path the session's lacks.
    [
      ["arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123abcd/alice@example.com"],
      /role session; name the role, arn:aws:iam::123456789012:role\/AWSReservedSSO_Admin_0123abcd with its path if it has one \(`aws iam get-role --role-name AWSReservedSSO_Admin_0123abcd --query Role.Arn` prints it/,
    ],
    [["arn:aws-cn:sts::123456789012:assumed-role/ops/alice"], /role session; name the role, arn:aws-cn:iam::123456789012:role\/ops with its path/],
    [[OPS, OPS], /tidemark setting markerSenders\.1: arn:aws:iam::123456789012:role\/ops is given twice/],
    ['["arn:aws:iam::123456789012:role/ops"', /tidemark setting markerSenders: a JSON array of IAM role or user ARNs/],
    ["", /tidemark setting markerSenders: empty: give \[\] to allow only the hosts' roles/],
  ])("fails the synth for %j, naming the setting", (value, message) => {
    // As `cdk synth` reads it (infra/app.ts), and as the stack's props.
    expect(() => settingsFromContext(() => value, ["tidemark:markerSenders"])).toThrow(SettingsError);
    expect(() => settingsFromContext(() => value, ["tidemark:markerSenders"])).toThrow(message);
    if (Array.isArray(value)) expect(() => new TidemarkStack(new App(), "T", { settings: { markerSenders: value } })).toThrow(message);
  });

  it("fails the synth for a principal of another account than the stack's, when the stack has a fixed account", () => {
    expect(() => synth({ markerSenders: ["arn:aws:iam::210987654321:role/ops"] }, { account: "123456789012", region: "eu-west-1" })).toThrow(
      /tidemark setting markerSenders: arn:aws:iam::210987654321:role\/ops is in account 210987654321, but the stack deploys to 123456789012/,
    );
    expect(() => synth({ markerSenders: [OPS] }, { account: "123456789012", region: "eu-west-1" })).not.toThrow();
  });

  it("fails the synth for principals of two accounts, with or without a fixed account", () => {
    expect(() => synth({ markerSenders: [OPS, "arn:aws:iam::210987654321:user/bob"] })).toThrow(
      /tidemark setting markerSenders: lists principals of 2 accounts \(123456789012, 210987654321\); the stack deploys to one/,
    );
  });

  it("without a fixed account (infra/app.ts), the deploy checks the account: a rule stops it before any resource changes, naming the setting", () => {
    // No `env`: the synth cannot know the account. CloudFormation evaluates Rules before it creates or updates anything.
    const template = synth({ markerSenders: [OPS, ALICE] }).toJSON() as { Rules: Record<string, unknown> };
    const rules = Object.entries(template.Rules).filter(([id]) => id !== "CheckBootstrapVersion");
    expect(rules).toEqual([
      [
        expect.stringMatching(/^MarkerSendersSameAccount/),
        {
          Assertions: [
            {
              Assert: { "Fn::Equals": [{ Ref: "AWS::AccountId" }, "123456789012"] },
              AssertDescription: "tidemark setting markerSenders lists principals of account 123456789012, but the stack deploys to another account: list principals of the stack's account",
            },
          ],
        },
      ],
    ]);
    expect(Object.keys(synth({ markerSenders: [] }).toJSON().Rules as object)).not.toContainEqual(expect.stringMatching(/^MarkerSenders/));
  });
});
