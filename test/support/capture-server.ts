// An HTTP server on 127.0.0.1 that keeps every request as it arrived (for
// comparing what the SDK and tidemark's direct requests put on the wire) and
// answers with the responder of the moment.

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll } from "vitest";
import type { WireRequest } from "./sigv4.ts";

export type Responder = (request: WireRequest, res: ServerResponse) => void;

/** An HTTP server that keeps every request as it arrived and answers with the responder of the moment (200 when none). */
export class CaptureServer {
  readonly requests: WireRequest[] = [];
  responder: Responder | undefined;
  readonly #server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const request: WireRequest = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks) };
      this.requests.push(request);
      if (this.responder) this.responder(request, res);
      else {
        res.writeHead(200, { etag: '"0"' });
        res.end();
      }
    });
  });

  static async start(): Promise<CaptureServer> {
    const capture = new CaptureServer();
    await new Promise<void>((resolve) => capture.#server.listen(0, "127.0.0.1", resolve));
    return capture;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Forgets the requests and the responder, for the next test. */
  reset(): void {
    this.requests.length = 0;
    this.responder = undefined;
  }

  stop(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}


/** A capture server for the tests of a file (or describe block): started before them, reset after each, stopped after all. */
export function captureServerForTests(): { readonly server: CaptureServer } {
  const holder = {} as { server: CaptureServer };
  beforeAll(async () => {
    holder.server = await CaptureServer.start();
  });
  afterAll(async () => {
    await holder.server.stop();
  });
  afterEach(() => holder.server.reset());
  return holder;
}
