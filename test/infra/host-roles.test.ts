// `tidemark:hosts`: one role per source host, reaching only its own sets and
// EBS snapshots; the applier learns which role owns which set.

import { Match } from "aws-cdk-lib/assertions";
import { describe, expect, it } from "vitest";
import { APPLIER_ANNOUNCEMENT_KEY } from "../../contract/applier-accepts.ts";
import { STACK_OUTPUT } from "../../contract/stack-outputs.ts";
import { SET_ROLES_ENV } from "../../lambdas/applier/ownership.ts";
import { parseSettings, settingsFromContext } from "../../infra/settings.ts";
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { TidemarkStack } from "../../infra/stack.ts";
import type { TidemarkSettings } from "../../infra/settings.ts";

function synthStack(settings: Partial<TidemarkSettings> = {}) {
  const stack = new TidemarkStack(new App({ context: { "aws:cdk:bundling-stacks": [] } }), "Tidemark", { settings });
  return { stack, template: Template.fromStack(stack) };
}

const hosts = [
  { name: "web-1", sets: ["www", "db"] },
  { name: "files", sets: ["docs"], trust: "arn:aws:iam::123456789012:role/onprem-files" },
];

type Statement = { Sid?: string; Action: string | string[]; Resource: unknown; Condition?: Record<string, Record<string, unknown>> };
type Policy = { Properties: { Description: string; PolicyDocument: { Statement: Statement[] } } };

/** The statements of the managed policy whose description names the host, as JSON text per statement. */
function hostStatements(template: ReturnType<typeof synthStack>["template"], host: string): Map<string, string> {
  const policies = Object.values(template.findResources("AWS::IAM::ManagedPolicy")) as Policy[];
  const policy = policies.find((p) => p.Properties.Description.startsWith(`tidemark host ${host}:`));
  if (!policy) throw new Error(`no policy for host ${host}`);
  return new Map(policy.Properties.PolicyDocument.Statement.map((s) => [s.Sid ?? "", JSON.stringify(s)]));
}

describe("per-host roles", () => {
  const { template } = synthStack({ hosts, volumeSnapshots: true });

  it("give each host a role, assumable by its own principal (else this account), and an output to find it", () => {
    expect(Object.keys(template.findResources("AWS::IAM::Role", { Properties: { Description: Match.stringLikeRegexp("^tidemark agent role of host ") } }))).toHaveLength(2);
    template.hasResourceProperties("AWS::IAM::Role", {
      Description: "tidemark agent role of host files: sets docs only",
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { AWS: "arn:aws:iam::123456789012:role/onprem-files" } })] },
    });
    template.hasResourceProperties("AWS::IAM::Role", { Description: "tidemark agent role of host web-1: sets www, db only" });
    const outputs = template.findOutputs("*");
    expect(Object.keys(outputs)).toEqual(expect.arrayContaining([`${STACK_OUTPUT.hostRoleArnPrefix}Web1`, `${STACK_OUTPUT.hostRoleArnPrefix}Files`]));
  });

  it("let a host stage and read only under its own sets' prefixes", () => {
    const web = hostStatements(template, "web-1");
    const staging = web.get("WriteOwnStagingObjects") ?? "";
    expect(staging).toContain("/staging/www/*");
    expect(staging).toContain("/staging/db/*");
    expect(staging).not.toContain("docs");
    const reads = web.get("ReadOwnSets") ?? "";
    for (const prefix of ["state", "tasks", "snapshots", "data", "preserved", "blocks"]) {
      expect(reads).toContain(`/${prefix}/www/*`);
      expect(reads).toContain(`/${prefix}/db/*`);
    }
    expect(reads).not.toContain("docs");
    expect(reads).not.toMatch(/"\/(state|data|staging)\/\*"/);
    expect(web.get("ListOwnSets")).toContain("data/www/*");
    expect(web.get("ListOwnSets")).not.toContain("docs");
    const files = hostStatements(template, "files");
    expect(files.get("ReadOwnSets")).toContain("/data/docs/*");
    expect(files.get("ReadOwnSets")).not.toContain("www");
    // What the stack's applier reads (whole packs), for sets it has not written a status of yet: one object, no other set's state.
    for (const host of [reads, files.get("ReadOwnSets") ?? ""]) expect(host).toContain(`"/${APPLIER_ANNOUNCEMENT_KEY}"`);
  });

  it("let a host read only the EBS snapshots tagged with its own sets", () => {
    const ebs = JSON.parse(hostStatements(template, "web-1").get("ReadOwnEbsSnapshots") ?? "{}") as Statement;
    expect(ebs.Action).toEqual(["ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock"]);
    expect(ebs.Condition).toEqual({ StringEquals: { "aws:ResourceTag/tidemark:set": ["www", "db"] } });
  });

  it("tell the applier which role sends each set's messages", () => {
    const functions = Object.values(template.findResources("AWS::Lambda::Function", { Properties: { Environment: { Variables: { [SET_ROLES_ENV]: Match.anyValue() } } } }));
    expect(functions).toHaveLength(1);
    const text = JSON.stringify(functions[0]);
    for (const set of ["www", "db", "docs"]) expect(text).toContain(`\\"${set}\\":\\"`);
    expect(text).toContain("RoleId");
  });

  it("are absent without hosts: one shared agent policy, no set roles for the applier", () => {
    const plain = synthStack().template;
    expect(Object.keys(plain.findResources("AWS::IAM::ManagedPolicy", { Properties: { Description: Match.stringLikeRegexp("^tidemark host ") } }))).toEqual([]);
    expect(JSON.stringify(plain.findResources("AWS::Lambda::Function"))).not.toContain(SET_ROLES_ENV);
  });

  it("are validated: JSON from the command line, one host per set, names and sets checked", () => {
    const fromContext = settingsFromContext((key) => (key === "tidemark:hosts" ? '[{"name":"web1","sets":["www"]}]' : undefined), ["tidemark:hosts"]);
    expect(fromContext.hosts).toEqual([{ name: "web1", sets: ["www"] }]);
    expect(() => parseSettings({ hosts: "[{" })).toThrow(/tidemark setting hosts: a JSON array of hosts/);
    expect(() => parseSettings({ hosts: [{ name: "a", sets: ["www"] }, { name: "b", sets: ["www"] }] })).toThrow(/set "www" belongs to host "a" and "b"/);
    expect(() => parseSettings({ hosts: [{ name: "a", sets: ["x"] }, { name: "a", sets: ["y"] }] })).toThrow(/host "a" is given twice/);
    expect(() => parseSettings({ hosts: [{ name: "Web 1", sets: ["www"] }] })).toThrow(/hosts\.0\.name/);
    expect(() => parseSettings({ hosts: [{ name: "web", sets: ["../x"] }] })).toThrow(/hosts\.0\.sets\.0/);
    expect(() => parseSettings({ hosts: [{ name: "web", sets: [] }] })).toThrow(/at least one set/);
  });
});
