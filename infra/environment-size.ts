// Lambda takes at most 4 KB of environment variables (names and values). A
// setting that grows the applier's environment (tidemark:markerSenders above
// all: an IAM Identity Center role's ARN alone is over 100 bytes) would
// otherwise fail only at deploy, with Lambda's error instead of the setting's
// name. The synth cannot see deploy-time values: each counts at an estimate.

import { Stack } from "aws-cdk-lib";
import type { CfnFunction } from "aws-cdk-lib/aws-lambda";
import { SettingsError } from "./settings.ts";

/** Lambda's limit on a function's environment, names and values together. */
export const LAMBDA_ENVIRONMENT_BYTES = 4096;

/** A unique id (AROA…, AIDA…) is 21 characters; other deploy-time values (names, ARNs) count at their usual length at most. */
const UNIQUE_ID_BYTES = 21;
const ACCOUNT_ID_BYTES = 12;
const OTHER_REFERENCE_BYTES = 128;

/** The bytes a resolved CloudFormation value will take once deployed, deploy-time parts estimated. */
export function estimatedBytes(value: unknown): number {
  if (typeof value === "string") return Buffer.byteLength(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value).length;
  if (value && typeof value === "object") {
    const join = (value as { "Fn::Join"?: [string, unknown[]] })["Fn::Join"];
    if (join) return join[1].reduce<number>((sum, part) => sum + estimatedBytes(part), 0) + Buffer.byteLength(join[0]) * Math.max(0, join[1].length - 1);
    const getAtt = (value as { "Fn::GetAtt"?: [string, string] })["Fn::GetAtt"];
    if (getAtt && /(?:RoleId|UserId)$/.test(getAtt[1])) return UNIQUE_ID_BYTES;
    if ((value as { Ref?: string }).Ref === "AWS::AccountId") return ACCOUNT_ID_BYTES;
  }
  return OTHER_REFERENCE_BYTES;
}

/** What to tell the user when a variable that a setting fills is the largest. */
export interface SettingOfVariable {
  readonly setting: string;
  readonly advice: string;
}

/**
 * Fails the synth when the function's environment would pass Lambda's limit, naming the setting behind its
 * largest variable that `settingOf` knows (variable -> setting), else the largest variable.
 */
export function checkEnvironmentSize(fn: CfnFunction, settingOf: Readonly<Record<string, SettingOfVariable>>): void {
  const resolved = Stack.of(fn).resolve(fn.environment) as { variables?: Record<string, unknown> } | undefined;
  const sizes = Object.entries(resolved?.variables ?? {}).map(([name, value]) => ({ name, bytes: Buffer.byteLength(name) + estimatedBytes(value) }));
  const total = sizes.reduce((sum, s) => sum + s.bytes, 0);
  if (total <= LAMBDA_ENVIRONMENT_BYTES) return;
  const largest = [...sizes].sort((a, b) => b.bytes - a.bytes);
  const cause = largest.find((s) => settingOf[s.name] !== undefined) ?? largest[0];
  const known = cause ? settingOf[cause.name] : undefined;
  const message = `the applier's environment would take about ${total} bytes, over Lambda's limit of ${LAMBDA_ENVIRONMENT_BYTES}${cause ? `; ${cause.name} takes about ${cause.bytes} of them` : ""}`;
  throw new SettingsError(known ? `tidemark setting ${known.setting}: ${message}: ${known.advice}` : message);
}
