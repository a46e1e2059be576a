import { spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { expect, it } from "vitest";
import { CLI, tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

it("finishes with its own exit code and no stack trace when its reader closes the pipe early (`tidemark task --help | head -1`)", async () => {
  const child = spawn(process.execPath, [CLI, "task", "--help"], { stdio: ["ignore", "pipe", "pipe"] });
  // Closed before the child has loaded its first module: every line it prints meets a closed pipe.
  child.stdout.destroy();
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  expect(stderr).toBe("");
  expect(code).toBe(0);
});

it("`tidemark local` on a port in use says so in one line, without the error's class name", async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
  const dir = tempDir();
  try {
    const { port } = busy.address() as AddressInfo;
    const out = await tidemark(["local", "--port", String(port), "--state", join(dir.path, "state")]);
    expect(out.code).toBe(1);
    expect(out.stderr).toBe(`tidemark: port ${port} on 127.0.0.1 is already in use (is another \`tidemark local\` running? pick another with --port)\n`);
  } finally {
    busy.close();
    dir.remove();
  }
});
