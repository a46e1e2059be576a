// The commands an operator runs when something is wrong (status, tasks,
// snapshots, restore to another folder) make no synchronous file-system call on a set's root: one on a
// hard-mounted NFS root whose server went away never returns. The CLI runs
// with a preload that records, and fails, every synchronous call on a path
// under the "hung" root; `run` still refuses sets overlapping through a
// symlink (it looks at the roots through its time-limited look process).

import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { CLI, runProcess } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

/** Wraps node:fs's synchronous calls: one on a path under $HUNG_ROOT is written to $HUNG_LOG and fails. */
const HUNG_FS = `data:text/javascript,${encodeURIComponent(`
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
const hung = process.env.HUNG_ROOT;
const log = process.env.HUNG_LOG;
const touches = (path) => typeof path === "string" && (path === hung || path.startsWith(hung + "/"));
const wrap = (name, real) => function (path, ...rest) {
  if (touches(path)) {
    fs.appendFileSync(log, name + " " + path + "\\n");
    throw Object.assign(new Error(name + " on the hung root " + path), { code: "EHUNG" });
  }
  return real.call(this, path, ...rest);
};
const native = fs.realpathSync.native;
for (const name of ["statSync", "lstatSync", "accessSync", "existsSync", "opendirSync", "readdirSync", "openSync", "realpathSync"]) fs[name] = wrap(name, fs[name]);
fs.realpathSync.native = wrap("realpathSync.native", native);
syncBuiltinESMExports();
`)}`;

const ENV = { ...process.env, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_EC2_METADATA_DISABLED: "true" };

let dir: ReturnType<typeof tempDir>;
let config: string;
let log: string;
beforeEach(() => {
  dir = tempDir("tidemark-no-root-calls-");
  for (const name of ["hung", "www"]) mkdirSync(join(dir.path, name));
  config = join(dir.path, "tidemark.config.json");
  log = join(dir.path, "touched.log");
  // Nothing listens on port 9: the target is unreachable at once.
  writeFileSync(
    config,
    JSON.stringify({ endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "hung", path: "hung" }, { name: "www", path: "www" }] }),
  );
});
afterEach(() => dir.remove());

function tidemarkHung(args: string[]) {
  return runProcess(process.execPath, ["--import", HUNG_FS, CLI, ...args, "--config", config], { env: { ...ENV, HUNG_ROOT: join(dir.path, "hung"), HUNG_LOG: log } });
}

it.each([[["status"]], [["status", "--json"]], [["tasks", "hung"]], [["snapshots", "hung"]], [["restore", "hung", "--snapshot", "latest", "--to", "/tmp/tidemark-restored-elsewhere"]]])("tidemark %j makes no synchronous call on a set's root", async (args) => {
  const out = await tidemarkHung(args);
  expect(out.code).not.toBeNull();
  expect(existsSync(log) ? readFileSync(log, "utf8") : "").toBe("");
});

it("the preload catches a synchronous call on the hung root (the test can fail)", async () => {
  writeFileSync(config, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "hung/state", sets: [{ name: "www", path: "www" }] }));
  await tidemarkHung(["status"]);
  expect(readFileSync(log, "utf8")).toMatch(/hung\/state/);
});

it("run still refuses two sets on one folder through a symlink", async () => {
  symlinkSync(join(dir.path, "www"), join(dir.path, "link"));
  writeFileSync(config, JSON.stringify({ endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "www", path: "www" }, { name: "alias", path: "link" }] }));
  const out = await runProcess(process.execPath, [CLI, "run", "--config", config], { env: ENV, timeoutMs: 30_000 });
  expect(out.stderr).toMatch(/sets "www" and "alias" are the same folder \(.*link -> .*www\)/);
  expect(out.code).toBe(1);
});
