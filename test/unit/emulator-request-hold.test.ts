// Requests that reach the local cloud's emulator before its layers are on
// wait, and then go through the layers (lambdas/local/emulator-request-hold.ts).

import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { holdRequests } from "../../lambdas/local/emulator-request-hold.ts";

const servers: http.Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

async function listening(handler: http.RequestListener): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (typeof address !== "object" || !address) throw new Error("no address");
  return { server, url: `http://127.0.0.1:${address.port}` };
}

describe("holdRequests", () => {
  it("holds requests until the layers are on, then passes them through the layers to the server's own handler, bodies kept", async () => {
    const { server, url } = await listening((request, response) => {
      let body = "";
      request.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      request.on("end", () => response.end(`own: ${request.url} ${body}`));
    });
    const release = holdRequests(server);
    const answered: string[] = [];
    const first = fetch(`${url}/first`, { method: "PUT", body: "one" }).then(async (r) => answered.push(await r.text()));
    const second = fetch(`${url}/second`).then(async (r) => answered.push(await r.text()));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(answered).toEqual([]);

    const seen: string[] = [];
    release(() => {
      const own = server.listeners("request");
      server.removeAllListeners("request");
      server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
        seen.push(request.url ?? "");
        if (request.url === "/second") return void response.end("layer: second");
        for (const listener of own) Reflect.apply(listener, server, [request, response]);
      });
    });
    await Promise.all([first, second]);
    expect(seen.sort()).toEqual(["/first", "/second"]);
    expect(answered.sort()).toEqual(["layer: second", "own: /first one"]);
    // Later requests take the same way.
    expect(await (await fetch(`${url}/later`, { method: "PUT", body: "two" })).text()).toBe("own: /later two");
  });
});
