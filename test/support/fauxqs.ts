// A fauxqs emulator on 127.0.0.1 for a test file, with fresh resources per use.

import { randomUUID } from "node:crypto";
import http from "node:http";
import { startFauxqs, type FauxqsServer } from "fauxqs";
import { listInByteOrder } from "../../lambdas/local/emulator-listing.ts";
import { listeningOnlyOn } from "../../lambdas/local/emulator-loopback.ts";
import { refuseOversizeMetadata } from "../../lambdas/local/emulator-metadata-limit.ts";

export async function startTestEmulator(): Promise<{ server: FauxqsServer; endpoint: string; newBucket(): string }> {
  // The local cloud's listing fix (lambdas/local/emulator.ts applies it too).
  await listInByteOrder();
  let httpServer: http.Server | undefined;
  const server = await listeningOnlyOn(
    "127.0.0.1",
    () => startFauxqs({ port: 0, host: "127.0.0.1", logger: false }),
    (opened) => {
      if (opened instanceof http.Server) httpServer ??= opened;
    },
  );
  // And S3's limit on metadata, as the local cloud refuses it (no request reached fauxqs yet).
  if (!httpServer) throw new Error("internal: fauxqs opened no HTTP server");
  refuseOversizeMetadata(httpServer);
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
