// The agent's config file: found by --config, else $TIDEMARK_CONFIG, else
// ./tidemark.config.json; validated once into a frozen object with defaults.

import { accessSync, constants, readFileSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join, resolve, sep } from "node:path";
import { z } from "zod";
import { ORPHAN_POLICIES, type OrphanPolicy } from "../contract/layout.ts";
import { setNameProblem } from "../contract/paths.ts";
import { COMPRESSIONS, type Compression } from "../contract/wire.ts";
import type { SetSpec } from "./set-spec.ts";
import { BandwidthSchema, type Bandwidth } from "./transport/bandwidth.ts";
import { MIRROR_MODES, type MirrorMode } from "./operations.ts";
import { DEFAULT_LINGER_MS } from "./set-sender.ts";
import { DEFAULT_CAPTURE_INTERVAL_MS } from "./capture-interval.ts";
import { describeIssue, strictObject } from "./strict-schema.ts";
import { readCaBundle } from "../lambdas/target/http-settings.ts";
import type { DrillPlan } from "./drill-schedule.ts";

export class ConfigError extends Error {
  override name = "ConfigError";
}

const SetName = z.string().superRefine((name, ctx) => {
  const problem = setNameProblem(name);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

const TreeSetSchema = strictObject({
  name: SetName,
  type: z.literal("tree").default("tree"),
  path: z.string().min(1, "path is empty"),
  exclude: z.array(z.string().min(1)).default([]),
});

/** A block device or disk image, replicated as 512 KiB blocks; `ebs-snapshot` markers cut EBS snapshots of it. */
const VolumeSetSchema = strictObject({
  name: SetName,
  type: z.literal("volume"),
  path: z.string().min(1, "path is empty"),
  /** Size of the volume at the target, when it differs from the device's or image's. */
  sizeGiB: z.number().int().min(1).max(65_536).optional(),
  /** How often the volume is read for changes besides watcher events (the only trigger for a device). */
  scanSeconds: z.number().int().min(5).default(60),
});

const SetConfigSchema = z.union([VolumeSetSchema, TreeSetSchema]);

const DURATION_UNITS_MS = new Map([
  ["s", 1000],
  ["m", 60_000],
  ["h", 3_600_000],
  ["d", 86_400_000],
]);

/** "90s", "15m", "24h", "7d" in milliseconds. */
const Every = z
  .string()
  .regex(/^[1-9]\d{0,5}[smhd]$/, 'a duration such as "30m", "24h" or "7d"')
  .transform((text) => Number(text.slice(0, -1)) * (DURATION_UNITS_MS.get(text.slice(-1)) ?? Number.NaN))
  .refine((ms) => ms >= 60_000, "drills run at most once a minute");

/** A recovery drill the running agent runs on a schedule (`tidemark drill`). */
const DrillConfigSchema = strictObject({
  set: SetName,
  every: Every,
  /** Application check run inside the restored tree; a non-zero exit fails the drill. */
  check: z.string().min(1).optional(),
});

export const ConfigSchema = strictObject({
    region: z.string().min(1).default("us-east-1"),
    endpoint: z.url().optional(),
    /** EBS direct API endpoint (the local cloud's stand-in); AWS's when absent. */
    ebsEndpoint: z.url().optional(),
    /** HTTP(S) proxy for every AWS request, http:// or https://; else HTTPS_PROXY / HTTP_PROXY. NO_PROXY applies either way. */
    proxy: z.url({ protocol: /^https?$/, error: "an http:// or https:// URL such as \"http://proxy.example.com:3128\"" }).optional(),
    /** PEM file of certificate authorities trusted besides Node's (e.g. a TLS-inspecting proxy's); else AWS_CA_BUNDLE. */
    caBundle: z.string().min(1).optional(),
    queueUrl: z.url(),
    bucket: z.string().min(3).max(63),
    stateDir: z.string().min(1),
    sets: z.array(SetConfigSchema).min(1, "at least one set is needed"),
    tasks: strictObject({
        /** Whether `tidemark task` may insert markers from this host (markers from elsewhere run regardless). */
        enabled: z.boolean().default(true),
        /** EventBridge bus the agent announces "task received" on once the queue accepted a marker (the stack's EventBusName). */
        eventBus: z.string().min(1).optional(),
        /** The local cloud's event log (JSON lines), instead of a bus. */
        eventsFile: z.string().min(1).optional(),
      })
      .default({ enabled: true }),
    /** How inline content is compressed; content that does not shrink travels as it is. */
    compression: z.enum(COMPRESSIONS).default("zstd"),
    /** What a verification does with objects on the target that the source does not have. */
    orphans: z.enum(ORPHAN_POLICIES).default("report"),
    /** Largest backlog of a set (bytes of content) before it stops journaling and catches up later. */
    journalLimitBytes: z.number().int().min(1024 * 1024).default(8 * 1024 ** 3),
    /** How long a change arriving at an idle sender waits for more to share its message (a latency/cost trade; 0 sends at once). */
    lingerMs: z
      .number({ error: "a number of milliseconds, such as 2000 (0 sends every change at once)" })
      .int("whole milliseconds, such as 2000")
      .min(0, "0 or more milliseconds (0 sends every change at once)")
      .max(60_000, "at most 60000 ms: a change should not wait more than a minute to be sent")
      .default(DEFAULT_LINGER_MS),
    /** A small file that keeps changing is captured at most once this often (0: every change as soon as it is seen). */
    captureIntervalMs: z
      .number({ error: "a number of milliseconds, such as 500 (0 captures every change at once)" })
      .int("whole milliseconds, such as 500")
      .min(0, "0 or more milliseconds (0 captures every change at once)")
      .max(60_000, "at most 60000 ms: a file that keeps changing should reach the target at least once a minute")
      .default(DEFAULT_CAPTURE_INTERVAL_MS),
    /** A full barrier scan of every set this often, behind the watcher. */
    rescanSeconds: z.number().int().min(10).default(900),
    /** How often a set is scanned once its watcher failed. */
    fallbackScanSeconds: z.number().int().min(1).default(30),
    /** Cap on the bytes per second sent, optionally by time window. */
    bandwidth: BandwidthSchema.optional(),
    /** Mirror modes run without being asked: at start ("scan": a barrier scan against the journal's index) and after the target went out of sync. */
    mirror: strictObject({
        onStart: z.enum(["scan", ...MIRROR_MODES]).default("scan"),
        afterOutOfSync: z.enum(MIRROR_MODES).default("diff"),
      })
      .default({ onStart: "scan", afterOutOfSync: "diff" }),
    /** Recovery drills the running agent runs on a schedule. */
    drills: z.array(DrillConfigSchema).default([]),
  })
  .superRefine((config, ctx) => {
    const names = new Set<string>();
    config.sets.forEach((set, i) => {
      if (names.has(set.name)) ctx.addIssue({ code: "custom", path: ["sets", i, "name"], message: `set "${set.name}" is defined twice` });
      names.add(set.name);
    });
    config.drills.forEach((drill, i) => {
      const set = config.sets.find((s) => s.name === drill.set);
      if (!set) ctx.addIssue({ code: "custom", path: ["drills", i, "set"], message: `no set named "${drill.set}" to drill` });
      else if (set.type === "volume") ctx.addIssue({ code: "custom", path: ["drills", i, "set"], message: `set "${drill.set}" is a volume: drills restore file sets` });
    });
  });

export type ConfigFile = z.input<typeof ConfigSchema>;

export interface AgentConfig {
  readonly file: string;
  readonly region: string;
  readonly endpoint?: string;
  readonly ebsEndpoint?: string;
  readonly proxy?: string;
  /** Absolute; read and checked when the config is loaded. */
  readonly caBundle?: string;
  readonly queueUrl: string;
  readonly bucket: string;
  /** Absolute; relative paths in the file are relative to the file's folder. */
  readonly stateDir: string;
  readonly sets: readonly SetSpec[];
  readonly tasks: { readonly enabled: boolean; readonly eventBus?: string; readonly eventsFile?: string };
  readonly compression: Compression;
  readonly orphans: OrphanPolicy;
  readonly journalLimitBytes: number;
  /** How long changes arriving at an idle sender wait for more (ms; 0: at once). */
  readonly lingerMs: number;
  /** A small file that keeps changing is captured at most once this often (ms; 0: every change). */
  readonly captureIntervalMs: number;
  readonly rescanSeconds: number;
  readonly fallbackScanSeconds: number;
  readonly bandwidth?: Bandwidth;
  readonly mirror: { readonly onStart: "scan" | MirrorMode; readonly afterOutOfSync: MirrorMode };
  readonly drills: readonly DrillPlan[];
}

export { configPath, DEFAULT_CONFIG_FILE } from "./config-path.ts";

export function loadConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new ConfigError(
        `no config file at ${file} (pass --config FILE, set TIDEMARK_CONFIG, or run \`tidemark local\` / \`tidemark init\` to write one)`,
      );
    }
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = ConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const { path, message } = issue ? describeIssue(issue) : { path: "(top level)", message: "invalid" };
    throw new ConfigError(`config file ${file}: ${path}: ${message}`);
  }
  const base = dirname(file);
  const c = parsed.data;
  const config: AgentConfig = Object.freeze({
    file,
    region: c.region,
    ...(c.endpoint !== undefined ? { endpoint: c.endpoint } : {}),
    ...(c.ebsEndpoint !== undefined ? { ebsEndpoint: c.ebsEndpoint } : {}),
    ...(c.proxy !== undefined ? { proxy: c.proxy } : {}),
    ...(c.caBundle !== undefined ? { caBundle: resolve(base, c.caBundle) } : {}),
    queueUrl: c.queueUrl,
    bucket: c.bucket,
    stateDir: resolve(base, c.stateDir),
    sets: Object.freeze(c.sets.map((s) => setSpec(base, s))),
    tasks: Object.freeze({
      enabled: c.tasks.enabled,
      ...(c.tasks.eventBus !== undefined ? { eventBus: c.tasks.eventBus } : {}),
      ...(c.tasks.eventsFile !== undefined ? { eventsFile: resolve(base, c.tasks.eventsFile) } : {}),
    }),
    compression: c.compression,
    orphans: c.orphans,
    journalLimitBytes: c.journalLimitBytes,
    lingerMs: c.lingerMs,
    captureIntervalMs: c.captureIntervalMs,
    rescanSeconds: c.rescanSeconds,
    fallbackScanSeconds: c.fallbackScanSeconds,
    ...(c.bandwidth ? { bandwidth: c.bandwidth } : {}),
    mirror: Object.freeze({ ...c.mirror }),
    drills: Object.freeze(c.drills.map((d) => Object.freeze({ set: d.set, everyMs: d.every, ...(d.check !== undefined ? { check: d.check } : {}) }))),
  });
  checkPlaces(config);
  checkCaBundle(config);
  return config;
}

/** A CA bundle that cannot be read or holds no certificate is refused now, not at the first request. */
function checkCaBundle(config: AgentConfig): void {
  if (config.caBundle === undefined) return;
  try {
    readCaBundle(config.caBundle, "caBundle");
  } catch (error) {
    throw new ConfigError(`config file ${config.file}: caBundle: ${(error as Error).message}`);
  }
}

/** The real path of a path that may not exist yet: its nearest existing ancestor resolved (symlinks included), the rest appended. */
export function realPathOf(path: string): string {
  const absolute = resolve(path);
  try {
    return realpathSync.native(absolute);
  } catch (error) {
    const parent = dirname(absolute);
    if ((error as NodeJS.ErrnoException).code !== "ENOENT" || parent === absolute) return absolute;
    return join(realPathOf(parent), basename(absolute));
  }
}

/** True when `path` is `folder` or lies below it (both absolute and normalised). */
export function pathWithin(path: string, folder: string): boolean {
  return path === folder || path.startsWith(folder.endsWith(sep) ? folder : `${folder}${sep}`);
}

/**
 * Each file belongs to one set at most, and the agent's own state to none: two
 * sets on one folder, a set inside another (a folder or an image inside a tree
 * set), and a state folder inside a set are refused. `realOf` gives each path's
 * real path; loadConfig compares the paths as written (resolved, no file system
 * call: a set's root may be on a hung network file system, and status or stop
 * must not wait on it), the agent's start the real ones (root-places.ts).
 */
export function checkPlaces(config: AgentConfig, realOf: (path: string) => string = (path) => path): void {
  const where = (set: SetSpec) => (set.root === realOf(set.root) ? set.root : `${set.root} -> ${realOf(set.root)}`);
  const sets = config.sets.map((set) => ({ set, real: realOf(set.root) }));
  for (const [i, a] of sets.entries()) {
    for (const b of sets.slice(i + 1)) {
      if (a.real === b.real) {
        throw new ConfigError(`config file ${config.file}: sets "${a.set.name}" and "${b.set.name}" are the same ${a.set.volume ? "volume" : "folder"} (${where(b.set)}); one set per folder`);
      }
      for (const [outer, inner] of [[a, b], [b, a]] as const) {
        if (!outer.set.volume && pathWithin(inner.real, outer.real)) {
          throw new ConfigError(
            `config file ${config.file}: set "${inner.set.name}" (${where(inner.set)}) is inside set "${outer.set.name}" (${where(outer.set)}); sets may not nest: replicate the outer folder alone, or split it into sets side by side`,
          );
        }
      }
    }
  }
  const state = realOf(config.stateDir);
  for (const { set, real } of sets) {
    if (!set.volume && pathWithin(state, real)) {
      throw new ConfigError(
        `config file ${config.file}: stateDir ${config.stateDir} is inside set "${set.name}" (${where(set)}); the agent would replicate its own journal: put the state folder outside every set`,
      );
    }
  }
}

function setSpec(base: string, set: z.output<typeof SetConfigSchema>): SetSpec {
  const root = resolve(base, set.path);
  if (set.type === "tree") return Object.freeze({ name: set.name, root, exclude: Object.freeze([...set.exclude]) });
  const volume = Object.freeze({ scanMs: set.scanSeconds * 1000, ...(set.sizeGiB !== undefined ? { sizeBytes: set.sizeGiB * 1024 ** 3 } : {}) });
  return Object.freeze({ name: set.name, root, exclude: Object.freeze([]), volume });
}

/**
 * Checks that every set's folder (or volume) exists and is readable (before `run` starts watching). `held`: tree sets
 * the journal already replicated, whose root may be gone: the agent holds them (set-roots.ts) instead of refusing to start.
 */
export function checkSources(config: AgentConfig, held: (set: string) => boolean = () => false): void {
  for (const set of config.sets) {
    if (set.volume) {
      checkVolume(set);
      continue;
    }
    if (held(set.name)) continue;
    let isDir: boolean;
    try {
      isDir = statSync(set.root).isDirectory();
    } catch (error) {
      throw new ConfigError(`set "${set.name}": cannot read ${set.root}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    if (!isDir) throw new ConfigError(`set "${set.name}": ${set.root} is not a directory (a disk or image file is a set of "type": "volume")`);
    try {
      accessSync(set.root, constants.R_OK | constants.X_OK);
    } catch {
      throw new ConfigError(`set "${set.name}": ${set.root} is not readable by this user`);
    }
  }
}

function checkVolume(set: SetSpec): void {
  let st;
  try {
    st = statSync(set.root);
  } catch (error) {
    throw new ConfigError(`set "${set.name}": cannot read ${set.root}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (!st.isFile() && !st.isBlockDevice()) throw new ConfigError(`set "${set.name}": ${set.root} is neither a block device nor an image file`);
  try {
    accessSync(set.root, constants.R_OK);
  } catch {
    throw new ConfigError(`set "${set.name}": ${set.root} is not readable by this user (a device usually needs root or the disk group)`);
  }
}
