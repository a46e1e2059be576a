// EBS snapshot lock (EC2 LockSnapshot) for the snapshots `ebs-snapshot`
// markers cut: a locked snapshot cannot be deleted until the lock ends, in
// compliance mode by nobody at all. No EC2 SDK client ships with tidemark, so
// this is one SigV4-signed EC2 Query request (signed-requests.ts), sent to the
// EC2 endpoint beside the EBS client's (same partition, region, FIPS; a custom
// endpoint, such as the local stand-in, takes both APIs).

import type { EBSClient } from "@aws-sdk/client-ebs";
import { StartSnapshotCommand } from "@aws-sdk/client-ebs";
import { getEndpointFromInstructions } from "@smithy/core/endpoints";
import { sharedUntilFailure } from "../../contract/async.ts";
import { AwsRequestError, SignedRequests, type SignedResponse, type SigningTarget } from "../signed-requests.ts";

export const EC2_API_VERSION = "2016-11-15";

export type SnapshotLockMode = "governance" | "compliance";

export interface SnapshotLockSettings {
  readonly days: number;
  readonly mode: SnapshotLockMode;
}

/** What a task result records of a lock. */
export interface SnapshotLockRecord {
  readonly mode: SnapshotLockMode;
  /** When the lock ends (EC2's lockExpiresOn). */
  readonly until: string;
  /** EC2's lockState: governance, compliance, compliance-cooloff or expired. */
  readonly state: string;
}

/** The EC2 endpoint of an EBS endpoint: ebs.<region>.<domain> -> ec2.<region>.<domain>; any other host serves both. */
export function ec2EndpointOf(ebsEndpoint: URL): URL {
  const url = new URL(ebsEndpoint.href);
  url.hostname = url.hostname.replace(/^ebs(-fips)?\./, "ec2$1.");
  return url;
}

/** Where EC2 requests of the EBS client's account go, and how they are signed. */
export async function ec2SigningTarget(ebs: EBSClient): Promise<SigningTarget> {
  const endpoint = await getEndpointFromInstructions({}, StartSnapshotCommand, ebs.config);
  return { url: ec2EndpointOf(endpoint.url), signingName: "ec2", signingRegion: await ebs.config.region() };
}

/** The XML text of one element of an EC2 answer, unescaped. */
function element(xml: string, name: string): string | undefined {
  const text = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];
  return text?.replace(/&(amp|lt|gt|quot|apos);/g, (_, entity: string) => ({ amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" })[entity] ?? "");
}

/** EC2 Query errors: <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>. */
function ec2ErrorOf(response: SignedResponse): AwsRequestError {
  const xml = response.body.toString("utf8");
  return new AwsRequestError(element(xml, "Code") ?? `Http${response.status}`, element(xml, "Message") ?? `EC2 answered ${response.status}`, response.status, element(xml, "RequestID"));
}

/** EC2 LockSnapshot through the EBS client's region, credentials, clock offset and attempts. */
export class Ec2SnapshotLocks {
  readonly #requests: () => Promise<SignedRequests>;

  constructor(ebs: EBSClient) {
    this.#requests = sharedUntilFailure(async () => new SignedRequests(ebs.config, await ec2SigningTarget(ebs), ec2ErrorOf));
  }

  /**
   * Locks the snapshot (pending or completed) until the given time. Locking
   * again until the same time changes nothing, so a retried marker can lock
   * what an earlier attempt locked. Throws the AwsRequestError EC2 answered.
   */
  async lock(snapshotId: string, mode: SnapshotLockMode, until: Date): Promise<SnapshotLockRecord> {
    const form = new URLSearchParams({ Action: "LockSnapshot", Version: EC2_API_VERSION, SnapshotId: snapshotId, LockMode: mode, ExpirationDate: until.toISOString() });
    const requests = await this.#requests();
    const response = await requests.send("POST", "/", {
      body: Buffer.from(form.toString(), "utf8"),
      headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
    });
    const xml = response.body.toString("utf8");
    return { mode, until: element(xml, "lockExpiresOn") ?? until.toISOString(), state: element(xml, "lockState") ?? "unknown" };
  }
}
