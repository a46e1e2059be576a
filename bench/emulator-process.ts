// The emulator as a process of its own, for the scenarios where the target
// side must not share a thread with it (on AWS, S3 and SQS are never on the
// applier's thread). With a latency model (JSON as the first argument), the
// delay proxies of the model run here too, beside the emulator, so their work
// is not charged to the applier's CPU. Prints {"endpoint", "source",
// "applier"} on stdout once it listens; stops on SIGTERM.
// Run: node bench/emulator-process.ts ['{"wanRttMs":40,...}']

import { startEmulator } from "../lambdas/local/emulator.ts";
import { benchBucketVersioned, delayProxy, hasLatency, NO_LATENCY, type LatencyModel } from "./latency.ts";

const model: LatencyModel = process.argv[2] ? { ...NO_LATENCY, ...(JSON.parse(process.argv[2]) as Partial<LatencyModel>) } : NO_LATENCY;
const emulator = await startEmulator({ port: 0, versioned: benchBucketVersioned() });
const proxies = hasLatency(model) ? [await delayProxy(emulator.endpoint, model, "source"), await delayProxy(emulator.endpoint, model, "applier")] : [];
process.stdout.write(
  `${JSON.stringify({ endpoint: emulator.endpoint, source: proxies[0]?.endpoint ?? emulator.endpoint, applier: proxies[1]?.endpoint ?? emulator.endpoint })}\n`,
);
process.once("SIGTERM", () => {
  Promise.all(proxies.map((proxy) => proxy.close()))
    .then(() => emulator.stop())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
});
