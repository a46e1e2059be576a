// fauxqs opens its port before startFauxqs returns, and the local cloud's
// layers (bodies in files, versioned buckets) go on its HTTP server only
// after that: a request in between would reach fauxqs alone (a write on a
// versioned bucket kept no version). Requests wait until the layers are on,
// then go through them in arrival order.

import type http from "node:http";

type Listener = (request: http.IncomingMessage, response: http.ServerResponse) => void;

/**
 * Holds the requests `server` receives from now on. The function returned
 * gives the server its own request listeners back, runs `install` (which adds
 * layers around them, synchronously), then passes on the requests held.
 */
export function holdRequests(server: http.Server): (install: () => void) => void {
  const own = server.listeners("request");
  const held: Parameters<Listener>[] = [];
  const hold: Listener = (request, response) => {
    held.push([request, response]);
  };
  server.removeAllListeners("request");
  server.on("request", hold);
  return (install) => {
    server.off("request", hold);
    for (const listener of own) server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => Reflect.apply(listener, server, [request, response]));
    install();
    for (const [request, response] of held.splice(0)) server.emit("request", request, response);
  };
}
