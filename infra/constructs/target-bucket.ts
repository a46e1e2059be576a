// The target store: one bucket whose prefixes are the contract in
// contract/layout.ts (data/, staging/, snapshots/, preserved/, blocks/,
// tasks/, state/), plus the bucket its access logs go to.

import { Duration, RemovalPolicy } from "aws-cdk-lib";
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectLockRetention, ObjectOwnership } from "aws-cdk-lib/aws-s3";
import { Construct } from "constructs";
import { PREFIX } from "../../contract/layout.ts";
import type { LockMode } from "../settings.ts";

/**
 * Days an unapplied staging object is kept: longer than the queue keeps the
 * message that names it (14 days), so a delayed message never finds its
 * payload gone. Applied staging objects are deleted by the applier at once.
 */
export const STAGING_EXPIRY_DAYS = 15;

export interface TargetBucketProps {
  /**
   * Days noncurrent versions are kept.
   * @default 30
   */
  readonly noncurrentVersionDays?: number;
  /**
   * Keep the bucket and its objects when the stack is deleted.
   * @default true
   */
  readonly retainData?: boolean;
  /**
   * S3 Object Lock with this default retention on every version written. Only
   * a bucket created with it gets it: CloudFormation does not switch Object
   * Lock on for a bucket it created without.
   * @default no Object Lock
   */
  readonly objectLock?: { readonly days: number; readonly mode: LockMode };
}

export class TargetBucket extends Construct {
  readonly bucket: Bucket;
  readonly accessLogs: Bucket;

  constructor(scope: Construct, id: string, props: TargetBucketProps = {}) {
    super(scope, id);
    // Log delivery by bucket policy rather than by ACL, whatever the app's feature flags say.
    this.node.setContext("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", true);
    const retain = props.retainData ?? true;
    const removal = retain
      ? { removalPolicy: RemovalPolicy.RETAIN }
      : { removalPolicy: RemovalPolicy.DESTROY, autoDeleteObjects: true };
    const secure = {
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
    };
    this.accessLogs = new Bucket(this, "AccessLogs", {
      ...secure,
      ...removal,
      // Server access logs only arrive in a bucket encrypted with SSE-S3, which `secure` sets.
      lifecycleRules: [{ id: "expire-access-logs", expiration: Duration.days(90) }],
    });
    const lock = props.objectLock;
    this.bucket = new Bucket(this, "Bucket", {
      ...secure,
      ...removal,
      versioned: true,
      ...(lock
        ? {
            objectLockEnabled: true,
            objectLockDefaultRetention: (lock.mode === "compliance" ? ObjectLockRetention.compliance : ObjectLockRetention.governance)(Duration.days(lock.days)),
          }
        : {}),
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: "target/",
      lifecycleRules: [
        { id: "expire-unapplied-staging", prefix: PREFIX.staging, expiration: Duration.days(STAGING_EXPIRY_DAYS) },
        {
          id: "expire-noncurrent-versions",
          noncurrentVersionExpiration: Duration.days(props.noncurrentVersionDays ?? 30),
          expiredObjectDeleteMarker: true,
        },
        { id: "abort-incomplete-uploads", abortIncompleteMultipartUploadAfter: Duration.days(2) },
      ],
    });
  }
}
