// A fauxqs emulator on 127.0.0.1 for a test file, with fresh resources per use.

import { randomUUID } from "node:crypto";
import { startFauxqs, type FauxqsServer } from "fauxqs";
import { listInByteOrder } from "../../lambdas/local/emulator-listing.ts";

export async function startTestEmulator(): Promise<{ server: FauxqsServer; endpoint: string; newBucket(): string }> {
  // The local cloud's listing fix (lambdas/local/emulator.ts applies it too).
  await listInByteOrder();
  const server = await startFauxqs({ port: 0, host: "127.0.0.1", logger: false });
  return {
    server,
    endpoint: `http://127.0.0.1:${server.port}`,
    newBucket() {
      const name = `t-${randomUUID().slice(0, 8)}`;
      server.createBucket(name);
      return name;
    },
  };
}
