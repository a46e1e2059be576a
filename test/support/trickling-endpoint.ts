// An endpoint that answers byte by byte: a status line, then one byte of a
// header every 50 ms to every request, never idle and never done. Tests of
// the commands that must give up on it (the CLI's reads, the start check,
// doctor) rather than sit on it for hours.

import { createServer, type Server, type Socket } from "node:net";

export function tricklingEndpoint(): Server {
  return createServer((socket: Socket) => {
    socket.on("error", () => {});
    socket.once("data", () => {
      socket.write("HTTP/1.1 200 OK\r\nX-Slow: ");
      const timer = setInterval(() => socket.write("a"), 50);
      socket.on("close", () => clearInterval(timer));
    });
  });
}
