// fauxqs listens on 0.0.0.0 whatever host it is given (app.listen in its
// app.js). The local cloud accepts any credentials, so it must not be
// reachable from the network: while fauxqs starts, a listen on every
// address is turned into a listen on 127.0.0.1.

import { Server, type ListenOptions } from "node:net";

const EVERY_ADDRESS = new Set(["0.0.0.0", "::"]);

function isListenOptions(value: unknown): value is ListenOptions {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Runs start with every server it opens on all addresses bound to host instead; onListen sees each server before it listens. */
export async function listeningOnlyOn<T>(host: string, start: () => Promise<T>, onListen?: (server: Server) => void): Promise<T> {
  const listen = Server.prototype.listen;
  function loopbackListen(this: Server, ...args: unknown[]): Server {
    onListen?.(this);
    const [first] = args;
    if (isListenOptions(first) && first.host !== undefined && EVERY_ADDRESS.has(first.host)) args[0] = { ...first, host };
    return Reflect.apply(listen, this, args) as Server;
  }
  Server.prototype.listen = loopbackListen;
  try {
    return await start();
  } finally {
    Server.prototype.listen = listen;
  }
}
