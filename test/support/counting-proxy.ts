// A tiny HTTP proxy on 127.0.0.1 for tests: forwards absolute-URL requests
// (http endpoints) and tunnels CONNECT (https endpoints), counting both. Hosts
// may be routed elsewhere: an endpoint named `*.invalid` resolves nowhere, so
// a client that reaches it at all went through the proxy.

import { createServer, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";

export interface ProxiedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

export class CountingProxy {
  /** Requests forwarded in absolute form, as they arrived. */
  readonly forwarded: ProxiedRequest[] = [];
  /** CONNECT targets (host:port). */
  readonly tunnels: string[] = [];
  readonly #routes: Map<string, { host: string; port: number }>;
  readonly #sockets = new Set<Socket>();
  readonly #server = createServer((req, res) => {
    this.forwarded.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    const url = new URL(req.url ?? "/");
    const to = this.#route(url.hostname, Number(url.port || 80));
    // A routed name arrives with the target's own Host (the emulator reads a dotted Host as a virtual-hosted bucket).
    const headers = { ...req.headers, host: `${to.host}:${to.port}` };
    const upstream = httpRequest({ host: to.host, port: to.port, method: req.method, path: `${url.pathname}${url.search}`, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on("error", () => res.writeHead(502).end());
    req.pipe(upstream);
  });

  private constructor(routes: Record<string, { host: string; port: number }>) {
    this.#routes = new Map(Object.entries(routes));
    this.#server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
    this.#server.on("connect", (req, client: Socket, head: Buffer) => {
      const target = req.url ?? "";
      this.tunnels.push(target);
      const [host = "", port = "443"] = target.split(":");
      const to = this.#route(host, Number(port));
      const upstream = connect(to.port, to.host, () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      this.#sockets.add(upstream);
      upstream.on("close", () => this.#sockets.delete(upstream));
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
    });
  }

  /** Starts on 127.0.0.1, port 0; `routes` maps a host name to where the proxy really connects. */
  static async start(routes: Record<string, { host: string; port: number }> = {}): Promise<CountingProxy> {
    const proxy = new CountingProxy(routes);
    await new Promise<void>((resolve) => proxy.#server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Everything that went through: forwarded requests and tunnels. */
  get count(): number {
    return this.forwarded.length + this.tunnels.length;
  }

  #route(host: string, port: number): { host: string; port: number } {
    return this.#routes.get(host) ?? { host, port };
  }

  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
