// `tidemark:markerSenders`: the principals an operator lists as allowed to send
// task markers straight to the queue (console, script). SQS names a sender by
// its unique id (RoleId "AROA...:session", UserId "AIDA..."), not its ARN, so
// each ARN is looked up once at deploy time (iam:GetRole / iam:GetUser), as the
// host roles' ids are (GetAtt), and handed to the applier (checked in
// lambdas/applier/ownership.ts). The queue's policy lets them send.

import { createHash } from "node:crypto";
import { Aws, CfnRule, Fn, Stack, Token } from "aws-cdk-lib";
import { ArnPrincipal, Effect, PolicyStatement, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { LogGroup, RetentionDays } from "aws-cdk-lib/aws-logs";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { AwsCustomResource, AwsCustomResourcePolicy, PhysicalResourceId, type AwsSdkCall } from "aws-cdk-lib/custom-resources";
import { Construct } from "constructs";
import { MARKER_SENDERS_ENV, type MarkerSender } from "../../lambdas/applier/ownership.ts";
import { iamPrincipalOf, SettingsError } from "../settings.ts";

export interface MarkerSendersProps {
  /** IAM role and user ARNs of the stack's account (validated by infra/settings.ts). */
  readonly senders: readonly string[];
  /** `tidemark:markerSendersRefresh`: a new value looks the ids up again (and rewrites the queue's grant). */
  readonly refresh?: string;
  readonly queue: IQueue;
}

export class MarkerSenders extends Construct {
  /** What the applier needs to check a queue marker's sender: the listed principals' unique ids and ARNs. */
  readonly environment: Record<string, string>;

  constructor(scope: Construct, id: string, props: MarkerSendersProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const principals = props.senders.map((arn) => ({ arn, ...iamPrincipalOf(arn) }));
    // Principals of the stack's account only: another account's id cannot be looked up (and the queue would let it
    // send). Checked at synth when the list names two accounts or the stack has a fixed account (`env`); otherwise
    // (infra/app.ts gives none) by a CloudFormation rule that stops the deploy before any resource changes.
    const accounts = [...new Set(principals.map((principal) => principal.account))];
    if (accounts.length > 1) {
      throw new SettingsError(`tidemark setting markerSenders: lists principals of ${accounts.length} accounts (${accounts.join(", ")}); the stack deploys to one: list principals of the stack's account`);
    }
    const [first] = principals;
    if (first) {
      const account = first.account;
      if (!Token.isUnresolved(stack.account) && account !== stack.account) {
        throw new SettingsError(`tidemark setting markerSenders: ${first.arn} is in account ${account}, but the stack deploys to ${stack.account}; list principals of the stack's account`);
      }
      new CfnRule(this, "SameAccount", {
        assertions: [
          {
            assert: Fn.conditionEquals(Aws.ACCOUNT_ID, account),
            assertDescription: `tidemark setting markerSenders lists principals of account ${account}, but the stack deploys to another account: list principals of the stack's account`,
          },
        ],
      });
    }
    const lookups = principals.length > 0 ? this.#lookupProvider() : undefined;
    const senders: MarkerSender[] = principals.map((principal) => {
      const field = principal.kind === "role" ? "Role.RoleId" : "User.UserId";
      const call: AwsSdkCall = {
        service: "IAM",
        action: principal.kind === "role" ? "GetRole" : "GetUser",
        parameters: principal.kind === "role" ? { RoleName: principal.name } : { UserName: principal.name },
        // A new physical id changes the resource's properties: CloudFormation updates it, so the lookup runs again.
        physicalResourceId: PhysicalResourceId.of(props.refresh === undefined ? principal.arn : `${principal.arn}#${props.refresh}`),
        outputPaths: [field],
      };
      // Named by the ARN's hash: reordering the list replaces nothing.
      const lookup = new AwsCustomResource(this, `Lookup${createHash("sha256").update(principal.arn).digest("hex").slice(0, 12)}`, {
        resourceType: "Custom::TidemarkMarkerSender",
        onCreate: call,
        onUpdate: call,
        policy: AwsCustomResourcePolicy.fromSdkCalls({ resources: [principal.arn] }),
        installLatestAwsSdk: false,
        ...lookups,
      });
      return { id: lookup.getResponseField(field), arn: principal.arn };
    });
    if (principals.length > 0) {
      props.queue.addToResourcePolicy(
        new PolicyStatement({
          // IAM stores a principal's unique id, not its ARN: a rewritten statement names a recreated role again.
          sid: `MarkerSendersMaySend${props.refresh ?? ""}`,
          effect: Effect.ALLOW,
          principals: principals.map((principal) => new ArnPrincipal(principal.arn)),
          actions: ["sqs:SendMessage"],
          resources: [props.queue.queueArn],
        }),
      );
    }
    this.environment = { [MARKER_SENDERS_ENV]: stack.toJsonString(senders) };
  }

  /** The look-ups' one function: its own role writing to its own log group, not the account-wide basic execution policy. */
  #lookupProvider(): { role: Role; logGroup: LogGroup } {
    const logGroup = new LogGroup(this, "LookupLogs", { retention: RetentionDays.ONE_MONTH });
    const role = new Role(this, "LookupRole", {
      assumedBy: new ServicePrincipal("lambda.amazonaws.com"),
      description: "tidemark: looks up the unique ids of tidemark:markerSenders at deploy time",
    });
    role.addToPolicy(new PolicyStatement({ actions: ["logs:CreateLogStream", "logs:PutLogEvents"], resources: [logGroup.logGroupArn] }));
    return { role, logGroup };
  }
}
