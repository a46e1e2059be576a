// The agent as a systemd service: a unit that runs `tidemark run` as a
// dedicated user, restarts it on failure, and confines it to reading the
// host and writing its state folder.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import type { AgentConfig } from "./config.ts";

export class ServiceError extends Error {
  override name = "ServiceError";
}

export const UNIT_NAME = "tidemark.service";
export const DEFAULT_UNIT_DIR = "/etc/systemd/system";
export const DEFAULT_SERVICE_USER = "tidemark";

export interface UnitOptions {
  readonly config: AgentConfig;
  /** The Node binary and the CLI the unit runs (this process's, by default). */
  readonly node: string;
  readonly cli: string;
  readonly user: string;
}

/** systemd quotes a word with spaces in double quotes; backslashes and quotes escaped. */
function quote(word: string): string {
  return /[\s"'\\]/.test(word) ? `"${word.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"` : word;
}

/**
 * The unit file. The agent reads every protected file whoever owns it
 * (CAP_DAC_READ_SEARCH, nothing else), writes only its state folder, and is
 * restarted when it exits non-zero: an agent that stops on a corrupt journal
 * or a bad config says why in the journal of each restart.
 */
export function renderUnit(options: UnitOptions): string {
  const { config } = options;
  const sets = config.sets.map((set) => set.name).join(", ");
  return `# Written by \`tidemark service install\`; see \`tidemark service --help\`.
[Unit]
Description=tidemark agent (sets: ${sets}) replicating to ${config.bucket}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=20

[Service]
Type=simple
User=${options.user}
Group=${options.user}
ExecStart=${[options.node, options.cli, "run", "--config", config.file, "--json-logs"].map(quote).join(" ")}
Restart=on-failure
RestartSec=10
TimeoutStopSec=60
# Reads every protected file and device whoever owns it; no other privilege.
AmbientCapabilities=CAP_DAC_READ_SEARCH
CapabilityBoundingSet=CAP_DAC_READ_SEARCH
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=${quote(config.stateDir)}
PrivateTmp=yes
PrivateDevices=${config.sets.some((set) => set.volume) ? "no" : "yes"}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
UMask=0077

[Install]
WantedBy=multi-user.target
`;
}

export interface InstallOptions extends UnitOptions {
  readonly unitDir: string;
  /** Enable and start the unit (systemctl); off writes the file only. */
  readonly start: boolean;
  /** Runs a system command (tests pass a recorder). */
  readonly run?: (command: string, args: readonly string[]) => CommandResult;
}

export interface CommandResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runCommand(command: string, args: readonly string[]): CommandResult {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.error) return { status: null, stdout: "", stderr: result.error.message };
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The user's uid and gid, or undefined when there is no such user. */
function lookupUser(user: string, run: NonNullable<InstallOptions["run"]>): { uid: number; gid: number } | undefined {
  const uid = run("id", ["-u", user]);
  const gid = run("id", ["-g", user]);
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Creates the service user (a system user without a login or home) unless it exists, the state folder it owns, the unit; then enables and starts it. */
export function installService(options: InstallOptions): { unitFile: string; steps: string[] } {
  const run = options.run ?? runCommand;
  const steps: string[] = [];
  if (!existsSync(options.unitDir)) throw new ServiceError(`${options.unitDir} does not exist: is this a systemd host? (--unit-dir DIR writes elsewhere)`);
  let ids = lookupUser(options.user, run);
  if (!ids) {
    const made = run("useradd", ["--system", "--no-create-home", "--home-dir", options.config.stateDir, "--shell", "/usr/sbin/nologin", options.user]);
    ids = lookupUser(options.user, run);
    if (made.status !== 0 || !ids) throw new ServiceError(`cannot create the service user "${options.user}": ${made.stderr.trim() || "useradd failed"} (run as root, or pass --user with an existing user)`);
    steps.push(`created system user ${options.user}`);
  }
  mkdirSync(options.config.stateDir, { recursive: true, mode: 0o700 });
  if (options.user !== userInfo().username) {
    // A journal written by an earlier `tidemark run` as another user must become the service's.
    const owned = run("chown", ["-R", `${ids.uid}:${ids.gid}`, options.config.stateDir]);
    if (owned.status !== 0) throw new ServiceError(`cannot give ${options.config.stateDir} to ${options.user}: ${owned.stderr.trim()}`);
    steps.push(`gave ${options.config.stateDir} to ${options.user}`);
  }
  const unitFile = join(options.unitDir, UNIT_NAME);
  writeFileSync(unitFile, renderUnit(options), { mode: 0o644 });
  steps.push(`wrote ${unitFile}`);
  if (options.start) {
    for (const args of [["daemon-reload"], ["enable", "--now", UNIT_NAME]]) {
      const done = run("systemctl", args);
      if (done.status !== 0) throw new ServiceError(`systemctl ${args.join(" ")} failed: ${done.stderr.trim() || `exit ${String(done.status)}`} (the unit is written at ${unitFile})`);
    }
    steps.push(`enabled and started ${UNIT_NAME}`);
  }
  return { unitFile, steps };
}
