// Bandwidth limit: the cap by time window, the long-run rate with a fake
// clock (no real sleeping), order of calls, and stopping while waiting.

import { expect, it } from "vitest";
import { BandwidthSchema, rateAt, RateLimitedTransport, type Bandwidth } from "../../agent/transport/bandwidth.ts";
import type { StagedPayload, Transport } from "../../agent/transport/transport.ts";

/** A local time on a known weekday: 2026-11-23 is a Monday. */
const at = (day: number, hhmm: string) => new Date(2026, 10, 23 + day, Number(hhmm.slice(0, 2)), Number(hhmm.slice(3)));

const office: Bandwidth = {
  bytesPerSecond: 1_000_000,
  schedule: [
    { days: ["mon", "tue", "wed", "thu", "fri"], from: "08:00", to: "18:00", bytesPerSecond: 100_000 },
    { from: "22:00", to: "06:00", bytesPerSecond: 0 },
  ],
};

it.each([
  ["a weekday at noon", at(0, "12:00"), 100_000],
  ["a weekday evening", at(0, "19:30"), 1_000_000],
  ["a Saturday at noon", at(5, "12:00"), 1_000_000],
  ["just before midnight", at(2, "23:59"), 0],
  ["past midnight", at(3, "02:00"), 0],
  ["the end of the night window", at(3, "06:00"), 1_000_000],
])("uses the right cap on %s", (_label, date, rate) => {
  expect(rateAt(office, date)).toBe(rate);
});

it("keeps a night window with days to the day it started on", () => {
  const fridayNight: Bandwidth = { bytesPerSecond: 5, schedule: [{ days: ["fri"], from: "22:00", to: "06:00", bytesPerSecond: 50 }] };
  expect(rateAt(fridayNight, at(5, "03:00"))).toBe(50); // Saturday 03:00, in Friday's night
  expect(rateAt(fridayNight, at(4, "03:00"))).toBe(5); // Friday 03:00, in Thursday's night
});

it.each([
  [{ schedule: [{ from: "25:00", to: "06:00", bytesPerSecond: 1 }] }, /schedule\.0\.from/],
  [{ schedule: [{ from: "22:00", to: "06:00", bytesPerSecond: -1 }] }, /schedule\.0\.bytesPerSecond/],
  [{ schedule: [{ days: ["someday"], from: "22:00", to: "06:00", bytesPerSecond: 1 }] }, /schedule\.0\.days\.0/],
])("refuses the schedule %j, naming the window", (value, path) => {
  const result = BandwidthSchema.safeParse(value);
  expect(result.success).toBe(false);
  expect(result.error?.issues.map((i) => i.path.join(".")).join(" ")).toMatch(path);
});

/** A transport that records calls, and a clock that moves only when the limiter sleeps. */
function harness(bandwidth: Bandwidth) {
  let clock = at(5, "12:00").getTime();
  const calls: string[] = [];
  const slept: number[] = [];
  const inner: Transport = {
    async stage(payload: StagedPayload) {
      calls.push(`stage ${payload.size}`);
    },
    async send(_set: string, id: string) {
      calls.push(`send ${id}`);
    },
  };
  const controller = new AbortController();
  const limited = new RateLimitedTransport(inner, bandwidth, {
    now: () => new Date(clock),
    sleep: async (ms, signal) => {
      signal?.throwIfAborted();
      slept.push(ms);
      clock += ms;
    },
    signal: controller.signal,
  });
  return { limited, calls, slept, controller, elapsed: () => clock - at(5, "12:00").getTime() };
}

it("holds the long-run rate to the cap", async () => {
  const { limited, calls, elapsed } = harness({ bytesPerSecond: 10_000 });
  const body = "x".repeat(1000);
  for (let i = 0; i < 200; i++) await limited.send("s", `m${i}`, body);
  expect(calls).toHaveLength(200);
  // 200 kB at 10 kB/s after a 10 kB burst: 19 s.
  expect(elapsed()).toBeGreaterThanOrEqual(19_000 * 0.97);
  expect(elapsed()).toBeLessThanOrEqual(19_000 * 1.03);
});

it("lets a call larger than the bucket go, and makes the next one wait for its debt", async () => {
  const { limited, calls, slept } = harness({ bytesPerSecond: 1_000 });
  await limited.stage({ set: "s", key: "k", sha256: "0".repeat(64), size: 5_000, source: { bytes: new Uint8Array(5_000) } });
  expect(slept).toEqual([]);
  await limited.send("s", "after", "y");
  expect(slept.reduce((a, b) => a + b, 0)).toBe(4_000);
  expect(calls).toEqual(["stage 5000", "send after"]);
});

it("does not wait at all when unlimited", async () => {
  const { limited, slept } = harness({});
  for (let i = 0; i < 50; i++) await limited.send("s", `m${i}`, "z".repeat(100_000));
  expect(slept).toEqual([]);
});

it("serves concurrent calls in arrival order", async () => {
  const { limited, calls } = harness({ bytesPerSecond: 100 });
  await Promise.all([limited.send("s", "first", "a".repeat(300)), limited.send("s", "second", "b"), limited.send("s", "third", "c".repeat(50))]);
  expect(calls).toEqual(["send first", "send second", "send third"]);
});

it("stops waiting when the agent stops, without calling the inner transport", async () => {
  const { limited, calls, controller } = harness({ bytesPerSecond: 10 });
  await limited.send("s", "burst", "x".repeat(100));
  controller.abort();
  await expect(limited.send("s", "waiting", "y")).rejects.toThrow(/abort/i);
  expect(calls).toEqual(["send burst"]);
});

it("tells a staged payload while it waits for the budget, behind another call or its debt, and once it goes", async () => {
  const { limited, calls } = harness({ bytesPerSecond: 1_000 });
  const payload = (key: string, told: string[]): StagedPayload => ({
    set: "s",
    key,
    sha256: "0".repeat(64),
    size: 5_000,
    source: { bytes: new Uint8Array(5_000) },
    pacing: (waiting) => told.push(`${waiting ? "waiting" : "goes"} (${calls.length} calls made)`),
  });
  const first: string[] = [];
  const second: string[] = [];
  const third: string[] = [];
  // The first goes at once (the bucket is full); the second waits for the first's debt; the third, behind the second.
  await Promise.all([limited.stage(payload("k1", first)), limited.stage(payload("k2", second)), limited.stage(payload("k3", third))]);
  expect(first).toEqual([]);
  expect(second).toEqual(["waiting (1 calls made)", "goes (1 calls made)"]);
  // The third is told as soon as the second's turn sleeps for the budget: it waits behind it.
  expect(third).toEqual(["waiting (1 calls made)", "goes (2 calls made)"]);
  expect(calls).toEqual(["stage 5000", "stage 5000", "stage 5000"]);
});

it("tells a set's message while it waits for the budget (an upload's debt) and once it goes; one that goes at once, nothing", async () => {
  const calls: string[] = [];
  const told: string[] = [];
  let clock = at(5, "12:00").getTime();
  const inner: Transport = {
    async stage(payload: StagedPayload) {
      calls.push(`stage ${payload.size}`);
    },
    async send(_set: string, id: string) {
      calls.push(`send ${id}`);
    },
  };
  const limited = new RateLimitedTransport(inner, { bytesPerSecond: 1_000 }, {
    now: () => new Date(clock),
    sleep: async (ms) => {
      clock += ms;
    },
    onSendWait: (set, waiting) => told.push(`${set} ${waiting ? "waiting" : "goes"} (${calls.length} calls made)`),
  });
  await limited.send("s", "first", "x");
  expect(told).toEqual([]);
  await limited.stage({ set: "s", key: "k", sha256: "0".repeat(64), size: 5_000, source: { bytes: new Uint8Array(5_000) } });
  await limited.send("s", "after", "y");
  expect(told).toEqual(["s waiting (2 calls made)", "s goes (2 calls made)"]);
  expect(calls).toEqual(["send first", "stage 5000", "send after"]);
});

it("tells nothing of sends that only take their turns within the budget (several sets at once: no status write per message)", async () => {
  const told: string[] = [];
  const inner: Transport = {
    async stage() {},
    async send() {},
  };
  const limited = new RateLimitedTransport(inner, { bytesPerSecond: 100_000_000 }, {
    now: () => at(5, "12:00"),
    sleep: async () => {
      throw new Error("no send here needs to wait for the budget");
    },
    onSendWait: (set, waiting) => told.push(`${set} ${waiting ? "waiting" : "goes"}`),
  });
  limited.send("warm", "0", "x");
  await Promise.all(["a", "b", "c"].map((set) => limited.send(set, `${set}-1`, "x".repeat(1_000))));
  expect(told).toEqual([]);
});
