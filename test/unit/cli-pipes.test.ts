import { spawn } from "node:child_process";
import { expect, it } from "vitest";
import { CLI } from "../support/cli.ts";

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
