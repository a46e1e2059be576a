// EBS snapshot lock: with tidemark:snapshotLockDays the ebs-snapshot action
// locks each snapshot it completed (EC2 LockSnapshot, a signed Query request)
// and records the lock in the task result. Against the local stand-in, which
// answers LockSnapshot as EC2 does and refuses what EC2 refuses.

import { randomBytes } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { CompleteSnapshotCommand, EBSClient, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { clientConfig } from "../../lambdas/aws-clients.ts";
import { startFakeEbs, type FakeEbs } from "../../lambdas/local/ebs-standin.ts";
import { AwsRequestError, SignedRequests } from "../../lambdas/signed-requests.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { snapshotLockFromEnvironment, TaskEnvironmentError, taskSettingsFromEnvironment } from "../../lambdas/tasks/environment.ts";
import { VolumeMap } from "../../lambdas/volumes/block-map.ts";
import { EbsSnapshotAction } from "../../lambdas/volumes/ebs-snapshot.ts";
import { Ec2SnapshotLocks, ec2EndpointOf, ec2SigningTarget, EC2_API_VERSION, type SnapshotLockSettings } from "../../lambdas/volumes/snapshot-lock.ts";
import { tempDir } from "../support/tree.ts";
import { VOLUME_SET as SET, volumeHarness, type VolumeHarness } from "../support/volume-harness.ts";

const DAY_MS = 86_400_000;
let ebs: FakeEbs;
let client: EBSClient;

beforeEach(async () => {
  ebs = await startFakeEbs();
  client = new EBSClient(clientConfig({ region: "us-east-1", endpoint: ebs.endpoint }));
});
afterEach(async () => {
  client.destroy();
  await ebs.stop();
});

function lockedHarness(lock: SnapshotLockSettings | undefined): { h: VolumeHarness; store: MemoryStore; action: EbsSnapshotAction } {
  const store = new MemoryStore();
  const action = new EbsSnapshotAction(client, store, lock ? { lock } : {});
  return { h: volumeHarness(randomBytes(8 * BLOCK_SIZE), { actions: { "ebs-snapshot": action } }, store), store, action };
}

describe("ebs-snapshot markers with a snapshot lock", () => {
  it("lock each completed snapshot until the set days after it completed, and record mode, until and state in the task result", async () => {
    const { h } = lockedHarness({ days: 30, mode: "compliance" });
    try {
      await h.agent.start();
      const before = Date.now();
      const first = await h.marker("ebs-snapshot");
      const after = Date.now();
      expect(first.status).toBe("succeeded");
      const id = String(first.outputs.ebsSnapshotId);
      const lock = ebs.snapshots.get(id)?.lock;
      expect(lock?.mode).toBe("compliance");
      const until = Date.parse(lock?.expiresOn ?? "");
      expect(until).toBeGreaterThanOrEqual(before + 30 * DAY_MS);
      expect(until).toBeLessThanOrEqual(after + 30 * DAY_MS);
      expect(first.outputs.lock).toEqual({ mode: "compliance", until: lock?.expiresOn, state: "compliance" });

      // The next snapshot of the chain is locked too, on its own.
      const image = openSync(h.image, "r+");
      writeSync(image, randomBytes(100), 0, 100, 3 * BLOCK_SIZE);
      closeSync(image);
      const second = await h.marker("ebs-snapshot");
      expect(second.outputs).toMatchObject({ parentSnapshotId: id, lock: { mode: "compliance", state: "compliance" } });
      expect(ebs.calls.get("LockSnapshot")).toBe(2);
      expect(ebs.refused).toEqual([]);
    } finally {
      await h.close();
    }
  });

  it("send no LockSnapshot without a lock setting", async () => {
    const { h } = lockedHarness(undefined);
    try {
      await h.agent.start();
      const result = await h.marker("ebs-snapshot");
      expect(result.status).toBe("succeeded");
      expect(result.outputs.lock).toBeUndefined();
      expect(ebs.calls.get("LockSnapshot")).toBeUndefined();
      expect(ebs.snapshots.get(String(result.outputs.ebsSnapshotId))?.lock).toBeUndefined();
    } finally {
      await h.close();
    }
  });

  it("lock again to the same end when a marker whose result was lost runs again, which a compliance lock allows", async () => {
    const { h, action } = lockedHarness({ days: 7, mode: "compliance" });
    try {
      await h.agent.start();
      const first = await h.marker("ebs-snapshot");
      const id = String(first.outputs.ebsSnapshotId);
      const until = ebs.snapshots.get(id)?.lock?.expiresOn;
      // The attempt that completed and locked the snapshot died before writing the task result: the marker runs again.
      const again = await action.run({
        context: { set: SET, taskId: first.id, seq: null, action: "ebs-snapshot", reachedAt: new Date().toISOString(), snapshotId: String(first.outputs.snapshotId) },
        fields: { action: "ebs-snapshot", timeoutSeconds: 60 },
        signal: new AbortController().signal,
        saveProgress: async () => {},
      });
      expect(again).toMatchObject({ ebsSnapshotId: id, lock: { mode: "compliance", until } });
      expect(ebs.snapshots.get(id)?.lock?.expiresOn).toBe(until);
      expect(ebs.calls.get("LockSnapshot")).toBe(2);
      expect(ebs.refused).toEqual([]);
    } finally {
      await h.close();
    }
  });

  it("fail the task, naming the complete snapshot, when EC2 refuses the lock; the snapshot still parents the next one", async () => {
    // Past EC2's 36,500 days: refused as EC2 refuses it.
    const { h, store } = lockedHarness({ days: 40_000, mode: "governance" });
    try {
      await h.agent.start();
      const failed = await h.marker("ebs-snapshot");
      expect(failed.status).toBe("failed");
      const [id] = [...ebs.snapshots.keys()];
      expect(ebs.snapshots.get(id ?? "")?.status).toBe("completed");
      const result = JSON.parse((await store.get(`tasks/${SET}/${failed.id}.json`))?.body.toString() ?? "{}") as { error?: string };
      expect(result.error).toMatch(new RegExp(`EBS snapshot ${id} is complete but not locked \\(governance, 40000 days\\): InvalidParameterValue: ExpirationDate is more than 36500 days away`));
      expect(ebs.refused).toEqual([expect.stringMatching(/^LockSnapshot: InvalidParameterValue/)]);
      expect((await VolumeMap.open(store, SET)).state.ebs?.snapshotId).toBe(id);
    } finally {
      await h.close();
    }
  });
});

describe("the stand-in's LockSnapshot", () => {
  /** A completed snapshot of one block. */
  async function completedSnapshot(): Promise<string> {
    const { h } = lockedHarness(undefined);
    try {
      await h.agent.start();
      return String((await h.marker("ebs-snapshot")).outputs.ebsSnapshotId);
    } finally {
      await h.close();
    }
  }

  const query = (params: Record<string, string>, service = "ec2") => {
    const requests = new SignedRequests(client.config, { url: new URL(ebs.endpoint), signingName: service, signingRegion: "us-east-1" }, (r) => new AwsRequestError(/<Code>([^<]*)</.exec(r.body.toString())?.[1] ?? "?", r.body.toString(), r.status, undefined));
    return requests
      .send("POST", "/", { body: Buffer.from(new URLSearchParams({ Action: "LockSnapshot", Version: EC2_API_VERSION, ...params }).toString()), headers: { "content-type": "application/x-www-form-urlencoded" } })
      .finally(() => requests.close());
  };

  it("refuses what EC2 refuses: no mode, both or neither of duration and date, a cooling-off outside compliance, a past date, an unknown snapshot, another service's signature, another action or API version", async () => {
    const id = await completedSnapshot();
    const cases: [Record<string, string>, string, string?][] = [
      [{ SnapshotId: id, LockDuration: "1" }, "InvalidParameterValue"],
      [{ SnapshotId: id, LockMode: "governance" }, "InvalidParameterCombination"],
      [{ SnapshotId: id, LockMode: "governance", LockDuration: "1", ExpirationDate: new Date(Date.now() + DAY_MS).toISOString() }, "InvalidParameterCombination"],
      [{ SnapshotId: id, LockMode: "governance", LockDuration: "1", CoolOffPeriod: "2" }, "InvalidParameterCombination"],
      [{ SnapshotId: id, LockMode: "governance", LockDuration: "0" }, "InvalidParameterValue"],
      [{ SnapshotId: id, LockMode: "governance", ExpirationDate: new Date(Date.now() - 1000).toISOString() }, "InvalidParameterValue"],
      [{ SnapshotId: "snap-0123456789abcdef0", LockMode: "governance", LockDuration: "1" }, "InvalidSnapshot.NotFound"],
      [{ LockMode: "governance", LockDuration: "1" }, "MissingParameter"],
      [{ SnapshotId: id, LockMode: "governance", LockDuration: "1" }, "AuthFailure", "ebs"],
      [{ Action: "DeleteSnapshot", SnapshotId: id }, "InvalidAction"],
      [{ Version: "2014-10-01", SnapshotId: id, LockMode: "governance", LockDuration: "1" }, "InvalidParameterValue"],
    ];
    for (const [params, code, service] of cases) {
      await expect(query(params, service), JSON.stringify(params)).rejects.toMatchObject({ name: code });
    }
    expect(ebs.refused).toHaveLength(cases.length);
    expect(ebs.snapshots.get(id)?.lock).toBeUndefined();
  });

  it("only extends a compliance lock once its cooling-off is over, and starts a duration lock of a pending snapshot at completion", async () => {
    const id = await completedSnapshot();
    const locks = new Ec2SnapshotLocks(client);
    const until = new Date(Date.now() + 10 * DAY_MS);
    expect(await locks.lock(id, "compliance", until)).toEqual({ mode: "compliance", until: until.toISOString(), state: "compliance" });
    await expect(locks.lock(id, "compliance", new Date(until.getTime() - DAY_MS))).rejects.toMatchObject({ name: "IncorrectState" });
    await expect(locks.lock(id, "governance", until)).rejects.toMatchObject({ name: "IncorrectState" });
    const later = new Date(until.getTime() + DAY_MS);
    expect((await locks.lock(id, "compliance", later)).until).toBe(later.toISOString());
    // Governance can be changed either way, and a cooling-off period leaves compliance open to change while it runs.
    const other = await completedSnapshot();
    await locks.lock(other, "governance", until);
    expect((await locks.lock(other, "governance", new Date(until.getTime() - DAY_MS))).state).toBe("governance");
    const answer = await query({ SnapshotId: other, LockMode: "compliance", LockDuration: "3", CoolOffPeriod: "24" });
    expect(answer.body.toString()).toContain("<lockState>compliance-cooloff</lockState>");
    expect(answer.body.toString()).toContain("<lockDuration>3</lockDuration>");

    const pending = String((await client.send(new StartSnapshotCommand({ VolumeSize: 1 }))).SnapshotId);
    const locked = (await query({ SnapshotId: pending, LockMode: "governance", LockDuration: "2" })).body.toString();
    expect(locked).toContain("<lockState>governance</lockState>");
    expect(locked).not.toContain("<lockExpiresOn>");
    const completing = Date.now();
    await client.send(new CompleteSnapshotCommand({ SnapshotId: pending, ChangedBlocksCount: 0 }));
    expect(Date.parse(ebs.snapshots.get(pending)?.lock?.expiresOn ?? "")).toBeGreaterThanOrEqual(completing + 2 * DAY_MS);
  });

  it("keeps locks across restarts when it persists its snapshots", async () => {
    const dir = tempDir();
    try {
      await ebs.stop();
      ebs = await startFakeEbs({ dir: dir.path });
      client.destroy();
      client = new EBSClient(clientConfig({ region: "us-east-1", endpoint: ebs.endpoint }));
      const id = await completedSnapshot();
      const until = new Date(Date.now() + 5 * DAY_MS);
      await new Ec2SnapshotLocks(client).lock(id, "governance", until);
      await ebs.stop();
      ebs = await startFakeEbs({ dir: dir.path });
      expect(ebs.snapshots.get(id)?.lock).toMatchObject({ mode: "governance", expiresOn: until.toISOString() });
    } finally {
      dir.remove();
    }
  });
});

describe("where the lock settings come from", () => {
  it("the applier on AWS locks with the settings the stack put in its environment", async () => {
    const store = new MemoryStore();
    const tasks = taskSettingsFromEnvironment({ TIDEMARK_ACTIONS_ENDPOINT: ebs.endpoint, TIDEMARK_SNAPSHOT_LOCK_DAYS: "3", TIDEMARK_SNAPSHOT_LOCK_MODE: "governance" }, "us-east-1", "bucket", store);
    const h = volumeHarness(randomBytes(4 * BLOCK_SIZE), tasks, store);
    try {
      await h.agent.start();
      const result = await h.marker("ebs-snapshot");
      expect(result.outputs.lock).toMatchObject({ mode: "governance", state: "governance" });
      expect(ebs.snapshots.get(String(result.outputs.ebsSnapshotId))?.lock?.mode).toBe("governance");
    } finally {
      await h.close();
    }
  });

  it("the applier's environment: days and mode, none at 0, and a value the stack never sets stops it", () => {
    expect(snapshotLockFromEnvironment({})).toEqual({});
    expect(snapshotLockFromEnvironment({ TIDEMARK_SNAPSHOT_LOCK_DAYS: "0", TIDEMARK_SNAPSHOT_LOCK_MODE: "compliance" })).toEqual({});
    expect(snapshotLockFromEnvironment({ TIDEMARK_SNAPSHOT_LOCK_DAYS: "30" })).toEqual({ lock: { days: 30, mode: "governance" } });
    expect(snapshotLockFromEnvironment({ TIDEMARK_SNAPSHOT_LOCK_DAYS: "7", TIDEMARK_SNAPSHOT_LOCK_MODE: "compliance" })).toEqual({ lock: { days: 7, mode: "compliance" } });
    expect(() => snapshotLockFromEnvironment({ TIDEMARK_SNAPSHOT_LOCK_DAYS: "seven" })).toThrow(TaskEnvironmentError);
    expect(() => snapshotLockFromEnvironment({ TIDEMARK_SNAPSHOT_LOCK_DAYS: "7", TIDEMARK_SNAPSHOT_LOCK_MODE: "legal" })).toThrow(/TIDEMARK_SNAPSHOT_LOCK_MODE must be governance or compliance/);
  });

  it("EC2's endpoint is the EBS endpoint's neighbour, in every partition and with FIPS; a custom endpoint serves both", () => {
    expect(ec2EndpointOf(new URL("https://ebs.eu-west-1.amazonaws.com")).href).toBe("https://ec2.eu-west-1.amazonaws.com/");
    expect(ec2EndpointOf(new URL("https://ebs.cn-north-1.amazonaws.com.cn")).href).toBe("https://ec2.cn-north-1.amazonaws.com.cn/");
    expect(ec2EndpointOf(new URL("https://ebs-fips.us-gov-west-1.amazonaws.com")).href).toBe("https://ec2-fips.us-gov-west-1.amazonaws.com/");
    expect(ec2EndpointOf(new URL("http://127.0.0.1:4566")).href).toBe("http://127.0.0.1:4566/");
  });

  it("an EBS client on AWS signs its EC2 requests for ec2 in its region, at the region's EC2 endpoint", async () => {
    const credentials = { accessKeyId: "a", secretAccessKey: "b" };
    const plain = new EBSClient({ region: "eu-west-1", credentials });
    const fips = new EBSClient({ region: "us-east-1", useFipsEndpoint: true, credentials });
    try {
      expect(await ec2SigningTarget(plain)).toEqual({ url: new URL("https://ec2.eu-west-1.amazonaws.com"), signingName: "ec2", signingRegion: "eu-west-1" });
      expect((await ec2SigningTarget(fips)).url.href).toBe("https://ec2-fips.us-east-1.amazonaws.com/");
      expect((await ec2SigningTarget(client)).url.href).toBe(`${ebs.endpoint}/`);
    } finally {
      plain.destroy();
      fips.destroy();
    }
  });
});
