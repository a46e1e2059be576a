// The applier: the SQS handler in lambdas/applier/handler.ts as a Lambda
// function on arm64, bundled by the local esbuild (no Docker), fed by the
// queue through an event source mapping that reports partial batch failures.

import { fileURLToPath } from "node:url";
import type { Duration } from "aws-cdk-lib";
import { PolicyStatement, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Architecture, Runtime } from "aws-cdk-lib/aws-lambda";
import { SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import { NodejsFunction } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup, RetentionDays } from "aws-cdk-lib/aws-logs";
import type { IBucket } from "aws-cdk-lib/aws-s3";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { APPLIER_ENV } from "../../lambdas/environment.ts";
import { acknowledge, bucketObjectsFinding } from "../nag.ts";

/** The largest batch a FIFO event source mapping takes. */
export const FIFO_MAX_BATCH_SIZE = 10;

const ENTRY = fileURLToPath(new URL("../../lambdas/applier/handler.ts", import.meta.url));
const PROJECT_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface ApplierProps {
  readonly queue: IQueue;
  readonly bucket: IBucket;
  readonly timeout: Duration;
  /**
   * Memory in MiB.
   * @default 1024
   */
  readonly memoryMiB?: number;
  /**
   * The most concurrent invocations the event source mapping starts.
   * @default 10
   */
  readonly maxConcurrency?: number;
  /** CloudWatch namespace of the applier's embedded metrics. */
  readonly metricsNamespace: string;
  /** Extra environment for the task actions (event bus, allow-list, vault). */
  readonly environment?: Record<string, string>;
}

export class Applier extends Construct {
  readonly function: NodejsFunction;
  readonly role: Role;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: ApplierProps) {
    super(scope, id);
    this.logGroup = new LogGroup(this, "Logs", { retention: RetentionDays.ONE_MONTH });
    // Its own role with write access to its own log group only, instead of the
    // account-wide AWSLambdaBasicExecutionRole managed policy.
    this.role = new Role(this, "Role", {
      assumedBy: new ServicePrincipal("lambda.amazonaws.com"),
      description: "tidemark applier: reads the replication queue, writes the target bucket",
    });
    this.role.addToPolicy(
      new PolicyStatement({ actions: ["logs:CreateLogStream", "logs:PutLogEvents"], resources: [this.logGroup.logGroupArn] }),
    );

    this.function = new NodejsFunction(this, "Function", {
      entry: ENTRY,
      handler: "handler",
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: `${PROJECT_ROOT}package-lock.json`,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      timeout: props.timeout,
      memorySize: props.memoryMiB ?? 1024,
      role: this.role,
      logGroup: this.logGroup,
      description: "tidemark applier: applies the replication stream to the target bucket in order",
      environment: {
        [APPLIER_ENV.bucket]: props.bucket.bucketName,
        [APPLIER_ENV.bucketArn]: props.bucket.bucketArn,
        [APPLIER_ENV.metricsNamespace]: props.metricsNamespace,
        NODE_OPTIONS: "--enable-source-maps",
        ...props.environment,
      },
      bundling: {
        // The SDK version the tests ran against ships with the function, not the runtime's.
        externalModules: [],
        minify: true,
        sourceMap: true,
        target: "node24",
        forceDockerBundling: false,
      },
    });

    // The applier owns every prefix of the bucket (contract/layout.ts): exactly the object calls the S3 store makes.
    this.role.addToPolicy(
      new PolicyStatement({ actions: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], resources: [props.bucket.arnForObjects("*")] }),
    );
    // GetBucketVersioning: a snapshot names object versions when the bucket keeps them.
    this.role.addToPolicy(new PolicyStatement({ actions: ["s3:ListBucket", "s3:GetBucketVersioning"], resources: [props.bucket.bucketArn] }));
    acknowledge(this, [
      {
        id: bucketObjectsFinding(props.bucket, "*"),
        reason: "The applier writes the live mirror, snapshots, task results and status under every prefix of its own target bucket, and only there.",
      },
    ]);
    this.function.addEventSource(
      new SqsEventSource(props.queue, {
        batchSize: FIFO_MAX_BATCH_SIZE,
        reportBatchItemFailures: true,
        maxConcurrency: props.maxConcurrency ?? 10,
      }),
    );
  }
}
