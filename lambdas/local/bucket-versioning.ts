// Whether the local cloud's bucket keeps object versions. By default it does,
// as the AWS stack's bucket does. A persisted emulator keeps the versioning it
// was created with: its snapshots and point-in-time history name what that
// versioning keeps (object versions, or copies under preserved/), and a
// bucket whose versioning changed under them would stop keeping what they
// name, so a moment of the window or a snapshot would no longer restore. The
// choice is recorded in the emulator's data dir; a data dir from before the
// record is read for the versioning its newest write had.

import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type SQLOutputValue } from "node:sqlite";

/** The file in the emulator's data dir that names its bucket's versioning. */
export const BUCKET_VERSIONING_FILE = "tidemark-bucket-versioning.json";
/** fauxqs's database in its data dir. */
const FAUXQS_DB = "fauxqs.db";

/** Asked for a versioning the persisted emulator's bucket was not created with. */
export class BucketVersioningMismatchError extends Error {
  override name = "BucketVersioningMismatchError";
  /** The versioning the data dir keeps (true: versioned). */
  readonly kept: boolean;

  constructor(message: string, kept: boolean) {
    super(message);
    this.kept = kept;
  }
}

/** The file under BUCKET_VERSIONING_FILE is not one this module wrote. */
export class BucketVersioningRecordError extends Error {
  override name = "BucketVersioningRecordError";
}

export interface SettledVersioning {
  readonly versioned: boolean;
  /**
   * asked: as the caller asked, on a new (or empty) data dir or none;
   * default: nothing asked, a new (or empty) data dir or none;
   * recorded: the data dir's record; found: a data dir from before the record, read for its newest write.
   */
  readonly why: "asked" | "default" | "recorded" | "found";
  /** The data dir it holds for (undefined: an emulator in memory). */
  readonly dataDir?: string;
}

/** The local cloud's default: versioned, as the stack's bucket. */
export const LOCAL_BUCKET_VERSIONED = true;

function describe(versioned: boolean): string {
  return versioned ? "a versioned bucket" : "an unversioned bucket";
}

function readRecord(file: string): boolean {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new BucketVersioningRecordError(`${file} is not readable JSON (${error instanceof Error ? error.message : String(error)}); it names the local bucket's versioning: restore it or remove the state dir`);
  }
  const versioned = typeof parsed === "object" && parsed !== null ? Reflect.get(parsed, "versioned") : undefined;
  if (typeof versioned !== "boolean") throw new BucketVersioningRecordError(`${file} names no versioning ({"versioned": true|false}); restore it or remove the state dir`);
  return versioned;
}

function text(row: Record<string, SQLOutputValue> | undefined, name: string): string | undefined {
  const value = row?.[name];
  return typeof value === "string" ? value : undefined;
}

/**
 * The versioning a data dir from before the record was last written with:
 * undefined when its bucket holds nothing (no semantics to keep). The newest
 * object is versioned when the versions table (emulator-versions.ts) holds it
 * as a current version; objects written unversioned have no row there.
 */
export function versioningFound(dataDir: string): boolean | undefined {
  const file = join(dataDir, FAUXQS_DB);
  if (!existsSync(file)) return undefined;
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const hasTable = (name: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
    const versionsTable = hasTable("tidemark_s3_versions");
    const newest = hasTable("s3_objects") ? db.prepare("SELECT bucket, key, etag, last_modified FROM s3_objects ORDER BY last_modified DESC LIMIT 1").get() : undefined;
    if (!newest) {
      // Every object deleted: delete markers (and older versions) say it was versioned.
      return versionsTable && db.prepare("SELECT 1 FROM tidemark_s3_versions WHERE version_id <> 'null' LIMIT 1").get() !== undefined ? true : undefined;
    }
    if (!versionsTable) return false;
    const row = db
      .prepare("SELECT 1 FROM tidemark_s3_versions WHERE bucket = ? AND key = ? AND etag = ? AND last_modified = ? AND version_id <> 'null' AND object IS NULL LIMIT 1")
      .get(text(newest, "bucket") ?? "", text(newest, "key") ?? "", text(newest, "etag") ?? "", text(newest, "last_modified") ?? "");
    return row !== undefined;
  } finally {
    db.close();
  }
}

/**
 * The versioning the emulator starts with: a data dir keeps its own
 * (recorded, or found in a data dir from before the record); `asked` decides
 * only for a new or empty one, else LOCAL_BUCKET_VERSIONED. Asking for the
 * other versioning of a kept one throws BucketVersioningMismatchError.
 */
export function settleBucketVersioning(dataDir: string | undefined, asked: boolean | undefined): SettledVersioning {
  const fresh = (): SettledVersioning => ({ versioned: asked ?? LOCAL_BUCKET_VERSIONED, why: asked === undefined ? "default" : "asked", ...(dataDir !== undefined ? { dataDir } : {}) });
  if (dataDir === undefined) return fresh();
  const record = join(dataDir, BUCKET_VERSIONING_FILE);
  const kept = existsSync(record) ? { versioned: readRecord(record), why: "recorded" as const } : undefined;
  const found = kept ?? (() => {
    const versioned = versioningFound(dataDir);
    return versioned === undefined ? undefined : { versioned, why: "found" as const };
  })();
  if (!found) return fresh();
  if (asked !== undefined && asked !== found.versioned) {
    throw new BucketVersioningMismatchError(
      `asked for ${describe(asked)}, but the local cloud's state in ${dataDir} holds ${describe(found.versioned)}: its snapshots and history name what that bucket keeps ` +
        `(${found.versioned ? "object versions" : "copies under preserved/"}), which the other versioning would not keep. ` +
        `Start it without asking (it keeps its own versioning), or give it a new state dir for ${describe(asked)}`,
      found.versioned,
    );
  }
  return { ...found, dataDir };
}

/** Records the versioning a data dir's emulator ran with (after it started), so the next start keeps it. */
export function recordBucketVersioning(settled: SettledVersioning): void {
  if (settled.dataDir === undefined || settled.why === "recorded") return;
  const file = join(settled.dataDir, BUCKET_VERSIONING_FILE);
  writeFileSync(`${file}.tmp`, `${JSON.stringify({ versioned: settled.versioned })}\n`);
  renameSync(`${file}.tmp`, file);
}
