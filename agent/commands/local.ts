import { existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { LOCAL_EVENTS_FILE, localTaskSettings } from "../../lambdas/local/tasks.ts";
import type { FakeEbs } from "../../lambdas/local/ebs-standin.ts";
import { LOCAL_REGION, startLocalTarget, type LocalTarget } from "../../lambdas/local/target.ts";
import { BucketVersioningMismatchError, BucketVersioningRecordError, type SettledVersioning } from "../../lambdas/local/bucket-versioning.ts";
import { setNameProblem } from "../../contract/paths.ts";
import { ConfigError, DEFAULT_CONFIG_FILE, loadConfig, pathWithin, realPathOf, type ConfigFile } from "../config.ts";
import { createLogger, logJsonLine } from "../log.ts";
import { startAgent, type RunningAgent } from "../runtime.ts";
import { startSourceAgent } from "./local-source.ts";
import { acquireStateLock } from "../state-lock.ts";
import { stringOption, untilStopped, UsageError, type Command } from "./command.ts";

const REGION = LOCAL_REGION;

/** A set name from a folder name: invalid characters become '-'. */
export function setNameFor(folder: string): string {
  const name = basename(resolve(folder)).replace(/[^A-Za-z0-9_.-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").replace(/\.\.+/g, ".").slice(0, 64);
  return name || "default";
}

/** A set for --source: a folder is a tree, a disk image or block device a volume. */
function sourceSet(name: string, path: string): ConfigFile["sets"][number] {
  const st = statSync(path);
  return st.isFile() || st.isBlockDevice() ? { name, type: "volume", path } : { name, path };
}

/** The config `tidemark local` leaves for every other command; keeps sets added by hand to an earlier one. */
function writeLocalConfig(
  file: string,
  target: { endpoint: string; ebsEndpoint: string; queueUrl: string; bucket: string },
  source?: { name: string; path: string },
): ConfigFile {
  let sets: ConfigFile["sets"] = [];
  if (existsSync(file)) {
    try {
      sets = (JSON.parse(readFileSync(file, "utf8")) as ConfigFile).sets ?? [];
    } catch {
      throw new ConfigError(`${file} exists but is not valid JSON; move it aside and run again`);
    }
  }
  if (source) sets = [...sets.filter((s) => s.name !== source.name), sourceSet(source.name, source.path)];
  const config: ConfigFile = { region: REGION, ...target, stateDir: "agent", sets, tasks: { enabled: true, eventsFile: LOCAL_EVENTS_FILE } };
  const temp = `${file}.tmp`;
  writeFileSync(temp, `${JSON.stringify(config, null, 2)}\n`);
  if (source) {
    // The set added must fit with those already there (no set on or inside another): a mistake leaves the config as it was.
    try {
      loadConfig(temp);
    } catch (error) {
      rmSync(temp, { force: true });
      throw error instanceof ConfigError ? new ConfigError(error.message.replaceAll(temp, file)) : error;
    }
  }
  renameSync(temp, file);
  return config;
}

/** What --versioned-bucket / --unversioned-bucket ask for: undefined leaves it to the state dir (versioned when new). */
function askedVersioning(values: Record<string, unknown>): boolean | undefined {
  const versioned = values["versioned-bucket"] === true;
  const unversioned = values["unversioned-bucket"] === true;
  if (versioned && unversioned) throw new UsageError("--versioned-bucket and --unversioned-bucket exclude each other");
  return versioned ? true : unversioned ? false : undefined;
}

/** The banner's line on the bucket's versioning: what it is and why. */
export function versioningLine(settled: SettledVersioning): string {
  const what = settled.versioned ? "versioned" : "unversioned";
  switch (settled.why) {
    case "default":
      return `${what} (the default, as the AWS stack's bucket)`;
    case "asked":
      return `${what} (as asked)`;
    case "recorded":
    case "found":
      return settled.versioned
        ? `${what} (kept from this state dir's first run)`
        : `${what} (kept: this state dir was created with an unversioned bucket, and its snapshots and history rely on preserved/; a new --state DIR gets a versioned one)`;
  }
}

/**
 * How to keep `tidemark local` running, said when it stopped because the process that started it exited (`nohup …
 * &` from a shell that then exits does not keep it): a process that stays (a kept shell, tmux) or systemd does.
 */
export const PARENT_EXITED_HINT =
  'tidemark local stops with the process that started it (nohup ... & does not change that once its shell exits): keep that shell open (or run it in tmux/screen), or run it under systemd (systemd-run --same-dir --unit tidemark-local "$(command -v tidemark)" local --state "$PWD/.tidemark" ...: a unit starts in / with systemd\'s PATH)';

function stoppingHint(reason: string): { hint?: string } {
  return reason === "parent exited" ? { hint: PARENT_EXITED_HINT } : {};
}

export const localCommand: Command = {
  name: "local",
  help: `Usage: tidemark local [--port 4566] [--state DIR] [--source DIR [--set NAME]] [--unversioned-bucket | --versioned-bucket] [--json-logs]

Starts the local cloud on 127.0.0.1: an SQS/S3 emulator with the FIFO queue
(and its dead-letter queue) and the target bucket, a stand-in for the EBS
direct APIs (ebs-snapshot markers of volume sets), and the same applier that
runs in Lambda, driven with the event source mapping's FIFO semantics. Writes
DIR/tidemark.config.json, a config every other command can use, and prints
the endpoints, queue URL and bucket. With --source it also runs the agent on
that folder (or disk image, as a volume set) in the same process; its first
scan of a large tree can take minutes (\`tidemark status\` shows progress).
Runs until SIGINT/SIGTERM, or until the process that started it exits
(Ctrl-C sent to \`npx\` alone stops it too, also during that first scan).

Queue, bucket, EBS snapshots and journal live under the state dir and survive
a restart. A corrupt journal is set aside at the start and a new one begun
(the target resyncs the set), as \`tidemark run\` does; one found corrupt
while running stops the command with exit code 1 (the next start sets it
aside).

The bucket keeps object versions, as the AWS stack's versioned bucket does:
snapshots and point-in-time history name the versions an overwrite or delete
leaves. --unversioned-bucket runs it without versions, as an S3-compatible
store without versioning would be: then the applier copies what each
overwrite replaces to preserved/ first. A state dir keeps the versioning it
was created with (its snapshots and history rely on it): one created
unversioned, by this option or by a tidemark before versioned became the
default, stays unversioned, and asking it for the other is refused.

Options:
  --port N        emulator port on 127.0.0.1 (default 4566)
  --state DIR     state dir (default ./.tidemark)
  --source PATH   replicate this folder, or disk image as a volume set (adds it to the config)
  --set NAME      set name for --source (default: the folder's name)
  --unversioned-bucket
                  a bucket without object versions (only for a new state dir)
  --versioned-bucket
                  the default; accepted, refused on a state dir created unversioned
  --json-logs     log one JSON object per line on stderr

Examples:
  tidemark local --source ~/documents
  tidemark local --port 4600 --state /tmp/tm --source ./site --set www
  tidemark local --source ./vm-disk.img --set vm
  tidemark local --unversioned-bucket --state /tmp/tm-plain --source ~/documents
  # then, in another terminal:
  tidemark status --config .tidemark/tidemark.config.json`,
  options: {
    port: { type: "string" },
    state: { type: "string" },
    source: { type: "string" },
    set: { type: "string" },
    "versioned-bucket": { type: "boolean" },
    "unversioned-bucket": { type: "boolean" },
    "json-logs": { type: "boolean" },
  },
  async run(values) {
    const port = Number(stringOption(values.port) ?? "4566");
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, got "${String(values.port)}"`);
    const source = stringOption(values.source);
    const setFlag = stringOption(values.set);
    if (setFlag !== undefined && source === undefined) throw new UsageError("--set goes with --source");
    const setName = setFlag ?? (source !== undefined ? setNameFor(source) : undefined);
    const problem = setName !== undefined ? setNameProblem(setName) : undefined;
    if (problem) throw new UsageError(`--set: ${problem}`);
    if (source !== undefined && !existsSync(source)) throw new UsageError(`--source ${source} does not exist`);
    const versioned = askedVersioning(values);

    const stateDir = resolve(stringOption(values.state) ?? ".tidemark");
    if (source !== undefined && pathWithin(realPathOf(stateDir), realPathOf(source))) {
      throw new UsageError(`the state folder ${stateDir} is inside --source ${resolve(source)}: the set would replicate its own journal; pass --state DIR outside it`);
    }
    // Before the emulator or the config is written: a second `tidemark local` on this state folder stops here.
    const lock = acquireStateLock(stateDir, "tidemark local", "local.lock");
    const log = createLogger({ json: values["json-logs"] === true });

    const stops: (() => Promise<void>)[] = [async () => lock.release()];
    let target: LocalTarget & { readonly ebs: FakeEbs };
    try {
      target = await startLocalTarget({
        region: REGION,
        emulator: { port, dataDir: join(stateDir, "emulator"), ...(versioned !== undefined ? { versioned } : {}) },
        // The EBS direct APIs have no emulator: the local cloud's protocol-level stand-in (the tests use it too), keeping its snapshots on disk.
        ebs: { dir: join(stateDir, "ebs") },
        tasks: ({ ebs }) => localTaskSettings(join(stateDir, LOCAL_EVENTS_FILE), ebs),
        // The same protection window as a deployed target: TIDEMARK_POINT_IN_TIME_DAYS, 7 days unless set.
        history: "environment",
        log: (line) => logJsonLine(log, line),
        metrics: (line) => log.debug("applier metrics", { emf: line }),
        poller: { onError: (error) => log.warn("poller", { error: error.message }) },
      });
    } catch (error) {
      lock.release();
      if (error instanceof BucketVersioningMismatchError) {
        const [option, had, relies, other] = error.kept
          ? ["--unversioned-bucket", "a versioned bucket", "object versions", "unversioned"]
          : ["--versioned-bucket", "an unversioned bucket", "copies under preserved/", "versioned"];
        throw new UsageError(
          `${option}: the state dir ${stateDir} was created with ${had}, and its snapshots and history rely on ${relies}; ` +
            `run without ${option} to keep it as it is, or pass a new --state DIR for an ${other} bucket`,
        );
      }
      if (error instanceof BucketVersioningRecordError) throw new ConfigError(error.message);
      throw error;
    }
    stops.push(() => target.stop());
    const kept = target.bucketVersioning;
    if (kept && !kept.versioned && (kept.why === "recorded" || kept.why === "found")) {
      log.info("bucket kept unversioned: the state dir was created so, and its snapshots and history rely on preserved/", { bucket: target.bucket, stateDir });
    }
    const stopAll = async () => {
      for (const stop of stops.reverse()) await stop();
    };
    try {
      const ebsEndpoint = target.ebs.endpoint;
      const configFile = join(stateDir, DEFAULT_CONFIG_FILE);
      const written = writeLocalConfig(
        configFile,
        { endpoint: target.endpoint, ebsEndpoint, queueUrl: target.queueUrl, bucket: target.bucket },
        source !== undefined && setName !== undefined ? { name: setName, path: resolve(source) } : undefined,
      );
      process.stdout.write(
        [
          `tidemark local is running`,
          `  endpoint  ${target.endpoint}`,
          `  queue     ${target.queueUrl}`,
          `  bucket    ${target.bucket}`,
          ...(target.bucketVersioning ? [`  versions  ${versioningLine(target.bucketVersioning)}`] : []),
          `  config    ${configFile}`,
          `  ebs       ${ebsEndpoint} (stand-in for the EBS direct APIs: ebs-snapshot markers)`,
          `  events    ${join(stateDir, LOCAL_EVENTS_FILE)} (task events, one JSON line each)`,
          "",
        ].join("\n"),
      );

      // Listening before the agent's first scan, which can take minutes: a stop or a launcher gone during it ends it.
      const stopping = untilStopped();
      let agent: RunningAgent | undefined;
      if (source !== undefined && setName !== undefined) {
        const config = loadConfig(configFile);
        const started = await startSourceAgent({
          source: resolve(source),
          setName,
          configFile,
          write: (text) => process.stdout.write(text),
          start: (signal) => startAgent(config, log, { ignorePaths: [stateDir], signal }),
          stopping,
        });
        if ("stoppedBy" in started) {
          log.info("stopping", { reason: started.stoppedBy, while: started.while, ...stoppingHint(started.stoppedBy) });
          return 0;
        }
        agent = started.agent;
        stops.push(() => agent?.stop() ?? Promise.resolve());
        process.stdout.write(`  replicating ${resolve(source)} as set "${setName}" -> s3://${target.bucket}/data/${setName}/\n`);
      } else if (written.sets.length === 0) {
        process.stdout.write(`  no sets yet: add one to ${configFile} and run \`tidemark run --config ${configFile}\`\n`);
      }
      process.stdout.write("Press Ctrl-C to stop.\n");
      // A journal found corrupt stops the command, as it stops `tidemark run`: the next start sets it aside.
      const reason = await Promise.race(agent ? [stopping, agent.failed] : [stopping]);
      if (reason instanceof Error) {
        // Stopped here, its own failure ignored: the journal's error is the one to report.
        await agent?.stop().catch(() => undefined);
        agent = undefined;
        throw reason;
      }
      log.info("stopping", { reason, ...stoppingHint(reason) });
    } finally {
      await stopAll();
    }
    return 0;
  },
};
