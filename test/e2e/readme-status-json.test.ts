// README's `tidemark status --json` (its example and its shape line) names
// every field status prints: a set replicated on the local cloud, with a
// snapshot taken, is reported with no key the README leaves out.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { collectStatus } from "../../agent/commands/status.ts";
import { loadConfig } from "../../agent/config.ts";
import { DEFAULT_TASK_TIMEOUT_SECONDS } from "../../contract/tasks.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const work = tempDir();
let cloud: TestCloud;
let agent: RunningAgent | undefined;
let configFile: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  const src = join(work.path, "src");
  mkdirSync(join(src, "sub"), { recursive: true });
  writeFileSync(join(src, "a.txt"), "hello\n");
  writeFileSync(join(src, "sub", "b.txt"), "world\n");
  configFile = cloud.writeConfig(work.path, [{ name: "docs", path: "src" }]);
  agent = await startAgent(loadConfig(configFile), silentLogger);
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

/** Every key path of value: `sets[].target.owner.keyId`, ... (an array's elements under `[]`). */
function keyPaths(value: unknown, at = ""): string[] {
  if (Array.isArray(value)) return value.flatMap((element) => keyPaths(element, `${at}[]`));
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, inner]) => [`${at}${at ? "." : ""}${key}`, ...keyPaths(inner, `${at}${at ? "." : ""}${key}`)]);
}

/** The README's status --json example (the JSON block after the sentence that introduces it) and its shape line. */
function readmeStatusJson(): { example: unknown; shape: string } {
  const from = README.indexOf("`tidemark status --json` prints");
  const block = /```json\n([\s\S]*?)\n```/.exec(README.slice(from));
  const shape = /Its full shape[^:]*: `([^`]*)`/.exec(README.slice(from));
  if (from < 0 || !block?.[1] || !shape?.[1]) throw new Error("README has no status --json example and shape");
  return { example: JSON.parse(block[1]), shape: shape[1] };
}

it("names every key status --json prints for a set in sync with a snapshot, in its example and its shape line", async () => {
  const marker = await agent?.agent.insertMarker("docs", { fields: { action: "snapshot", timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS } });
  expect(marker?.id).toBeTruthy();
  let printed: unknown;
  await eventually(async () => {
    const [report] = await collectStatus(configFile);
    expect(report?.inSync).toBe(true);
    expect(report?.target.reachable && report.target.lastSnapshot?.verification).toBe("verified");
    printed = { sets: [report] };
  }, 60_000);
  const { example, shape } = readmeStatusJson();

  const documented = new Set(keyPaths(example));
  expect(keyPaths(printed).filter((path) => !documented.has(path))).toEqual([]);
  const named = [...new Set(keyPaths(printed).map((path) => path.slice(path.lastIndexOf(".") + 1).replace("[]", "")))];
  expect(named.filter((key) => !shape.includes(`"${key}"`))).toEqual([]);
});
