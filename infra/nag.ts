// cdk-nag findings we reviewed and accept, each with its reason next to the
// construct that makes the decision. Findings name CloudFormation logical ids,
// so they are computed here rather than spelled by hand.

import { Stack, Validations } from "aws-cdk-lib";
import type { CfnBucket, IBucket } from "aws-cdk-lib/aws-s3";
import type { IConstruct } from "constructs";

/** The finding id for a wildcard resource under a bucket, e.g. `<TargetBucket123.Arn>/staging/*`. */
export function bucketObjectsFinding(bucket: IBucket, pattern: string): string {
  const cfn = bucket.node.defaultChild as CfnBucket;
  return `AwsSolutions-IAM5[Resource::<${Stack.of(bucket).getLogicalId(cfn)}.Arn>/${pattern}]`;
}

export function acknowledge(scope: IConstruct, findings: readonly { id: string; reason: string }[]): void {
  for (const finding of findings) Validations.of(scope).acknowledge(finding);
}
