// The emulator as a process of its own, for the scenarios where the target
// side must not share a thread with it (on AWS, S3 and SQS are never on the
// applier's thread). Prints {"endpoint"} on stdout once it listens; stops on SIGTERM.
// Run: node bench/emulator-process.ts

import { startEmulator } from "../lambdas/local/emulator.ts";

const emulator = await startEmulator({ port: 0 });
process.stdout.write(`${JSON.stringify({ endpoint: emulator.endpoint })}\n`);
process.once("SIGTERM", () => {
  emulator.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
