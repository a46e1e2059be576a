// Which Lambda function an `invoke` marker means, as one full ARN, and whether
// the target's allow-list holds exactly that function: partition, region,
// account, name and qualifier all count. A name alone means the function of
// that name in the applier's own account and region, as Lambda itself reads it.

import { APPLIER_ENV } from "../environment.ts";

/** Where a bare function name or partial ARN points: the applier's own account and region. */
export interface FunctionHome {
  readonly region: string;
  /** The applier's account id; without it only full ARNs can be resolved. */
  readonly account?: string;
}

export class FunctionRefError extends Error {
  override name = "FunctionRefError";
}

/** A function's full identity. `qualifier` is a version or alias; unqualified (and `$LATEST`) is undefined. */
export interface FunctionArn {
  readonly partition: string;
  readonly region: string;
  readonly account: string;
  readonly name: string;
  readonly qualifier?: string;
}

const FULL = /^arn:(aws[a-z-]*):lambda:([a-z0-9-]+):(\d{12}):function:([A-Za-z0-9_-]{1,64})(?::([A-Za-z0-9$_-]{1,128}))?$/;
const PARTIAL = /^(\d{12}):function:([A-Za-z0-9_-]{1,64})(?::([A-Za-z0-9$_-]{1,128}))?$/;
const NAME = /^([A-Za-z0-9_-]{1,64})(?::([A-Za-z0-9$_-]{1,128}))?$/;

/** The partition a region belongs to (aws-cn for China, aws-us-gov for GovCloud). */
function partitionOf(region: string): string {
  if (region.startsWith("cn-")) return "aws-cn";
  if (region.startsWith("us-gov-")) return "aws-us-gov";
  return "aws";
}

function arn(partition: string, region: string, account: string, name: string, qualifier: string | undefined): FunctionArn {
  // Lambda runs the unqualified function as $LATEST: one identity for both spellings.
  return { partition, region, account, name, ...(qualifier !== undefined && qualifier !== "$LATEST" ? { qualifier } : {}) };
}

/** Reads a full ARN, a partial ARN (ACCOUNT:function:NAME) or a name (NAME[:QUALIFIER]) as Lambda would. */
export function resolveFunction(ref: string, home: FunctionHome): FunctionArn {
  const full = FULL.exec(ref);
  if (full) return arn(full[1] ?? "aws", full[2] ?? "", full[3] ?? "", full[4] ?? "", full[5]);
  const partial = PARTIAL.exec(ref);
  if (partial) return arn(partitionOf(home.region), home.region, partial[1] ?? "", partial[2] ?? "", partial[3]);
  const named = NAME.exec(ref);
  if (!named) throw new FunctionRefError(`"${ref}" is neither a Lambda function name nor a function ARN`);
  if (home.account === undefined) {
    throw new FunctionRefError(`cannot tell which account function "${ref}" is in (the applier's account is not configured: ${APPLIER_ENV.account}); name it by its full ARN`);
  }
  return arn(partitionOf(home.region), home.region, home.account, named[1] ?? "", named[2]);
}

export function formatFunctionArn(f: FunctionArn): string {
  return `arn:${f.partition}:lambda:${f.region}:${f.account}:function:${f.name}${f.qualifier !== undefined ? `:${f.qualifier}` : ""}`;
}

/** True when the allow-list holds this very function: same partition, region, account, name and qualifier. */
export function allowedFunction(allowList: readonly FunctionArn[], requested: FunctionArn): boolean {
  const key = formatFunctionArn(requested);
  return allowList.some((allowed) => formatFunctionArn(allowed) === key);
}
