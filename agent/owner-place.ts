// Where the host's signing key (owner-key.ts) belongs: the machine and the
// state folder it was made for, recorded beside it. A state folder copied to
// another place (a cloned VM, `cp -a` to a second host, a backup restored onto
// a new machine while the old one runs) carries the key and the journal's
// numbering: two hosts would sign as the owner with one journal's seqs, and
// the target would take whichever message of a seq came first. Compared at
// each load of the key, a copy is told apart and makes its own key: a new
// host, which the ownership rules hold (`not-owner`) until `tidemark adopt`.

import { readFileSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { signingKeyFromPem } from "../contract/signing.ts";
import { writeJsonDurably } from "./durable-file.ts";

export const OWNER_PLACE_FILE = "owner.place.json";

/** Where the machine id is read, the first readable one counting (systemd's, then D-Bus's). */
export const MACHINE_ID_FILES: readonly string[] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

const PlaceSchema = z.object({
  /** The machine id (32 hex digits); null when the machine had none readable: then only paths are compared. */
  machineId: z.string().nullable(),
  /** The state folder's real path. */
  path: z.string(),
});

export type Place = z.infer<typeof PlaceSchema>;

const CopiedSchema = z.object({
  /** When the copy was found and this key made. */
  at: z.string(),
  /** The place the copied key was made for. */
  from: PlaceSchema,
  /** The copied key's id. */
  keyId: z.string(),
  /** Its file in the state folder, set aside. */
  setAside: z.string(),
});

/** This state folder was found to be a copy: the key it carried was set aside and the present one made. */
export type CopiedKey = z.infer<typeof CopiedSchema>;

export const OwnerPlaceSchema = z.object({
  v: z.literal(1),
  /** The key this record is for. */
  keyId: z.string(),
  ...PlaceSchema.shape,
  /** When this place was recorded. */
  since: z.string(),
  copied: CopiedSchema.optional(),
});

export type OwnerPlace = z.infer<typeof OwnerPlaceSchema>;

export function ownerPlacePath(stateDir: string): string {
  return join(stateDir, OWNER_PLACE_FILE);
}

/** The machine id from the first of these files holding one; null when none does (an emptied /etc/machine-id too). */
export function readMachineId(files: readonly string[] = MACHINE_ID_FILES): string | null {
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8").trim().toLowerCase();
    } catch {
      continue;
    }
    if (/^[0-9a-f]{32}$/.test(text)) return text;
  }
  return null;
}

/** Where this state folder (which exists) is now. */
export function currentPlace(stateDir: string, machineIdFiles?: readonly string[]): Place {
  return { machineId: readMachineId(machineIdFiles), path: realpathSync(stateDir) };
}

/** The state folder's place record: none, or one that cannot be read or parsed (named why). */
export function readOwnerPlace(stateDir: string): { record: OwnerPlace } | { missing: true } | { unreadable: string } {
  let text: string;
  try {
    text = readFileSync(ownerPlacePath(stateDir), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { missing: true };
    return { unreadable: (error as Error).message };
  }
  try {
    return { record: OwnerPlaceSchema.parse(JSON.parse(text)) };
  } catch (error) {
    return { unreadable: error instanceof z.ZodError ? z.prettifyError(error) : (error as Error).message };
  }
}

/** Why this key was made, when it was made because the state folder was found to be a copy (the record names it so). */
export function copiedKeyOf(found: ReturnType<typeof readOwnerPlace>, keyId: string): CopiedKey | undefined {
  return "record" in found && found.record.keyId === keyId ? found.record.copied : undefined;
}

/** The record, mode 0600, written durably (durable-file.ts). */
export function writeOwnerPlace(stateDir: string, record: OwnerPlace): void {
  writeJsonDurably(stateDir, OWNER_PLACE_FILE, record, 0o600);
}

/** "/var/lib/tidemark on machine 3d12…" for messages. */
export function describePlace(place: Place): string {
  return `${place.path} on ${place.machineId === null ? "a machine with no machine id" : `machine ${place.machineId}`}`;
}

/** What a load of the key does about its place. */
export type PlaceVerdict =
  /** The place recorded: nothing to write. */
  | { readonly kind: "same" }
  /** The key stays; its record is written (again) for this place. */
  | { readonly kind: "record"; readonly why: "no-record" | "unreadable" | "other-key" | "machine-id-found" | "same-folder" | "moved"; readonly detail?: string; readonly copied?: CopiedKey }
  /** The state folder is a copy of the recorded place: the key is set aside and a new one made. */
  | { readonly kind: "copy"; readonly from: Place; readonly why: string };

/**
 * The key id of the state folder at this path, "none" when it holds no key (or no longer exists), undefined when
 * that cannot be told (unreadable): then the key is not taken for moved.
 */
function keyIdAt(path: string): string | "none" | undefined {
  let pem: string;
  try {
    pem = readFileSync(join(path, "owner.key"), "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOENT" || code === "ENOTDIR" ? "none" : undefined;
  }
  try {
    return signingKeyFromPem(pem).keyId;
  } catch {
    return undefined;
  }
}

/** The same folder reached by another path (a bind mount, a renamed mount point): same device and inode. */
function sameFolder(a: string, b: string): boolean {
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** How the key with this id stands to the state folder's place record and the place it is in now. */
export function judgePlace(found: ReturnType<typeof readOwnerPlace>, keyId: string, here: Place): PlaceVerdict {
  if ("missing" in found) return { kind: "record", why: "no-record" };
  if ("unreadable" in found) return { kind: "record", why: "unreadable", detail: found.unreadable };
  const { record } = found;
  if (record.keyId !== keyId) {
    // A rekey that stopped between writing the new key's record and putting the key in place: still the copy.
    if (record.copied?.keyId === keyId) return { kind: "copy", from: record.copied.from, why: "a rekey of this copied state folder did not finish" };
    // The key was replaced by hand (restored from a backup, say): its place is not known; this one is taken.
    return { kind: "record", why: "other-key", detail: `the record was made for key ${record.keyId}` };
  }
  const copied = record.copied ? { copied: record.copied } : {};
  const recorded: Place = { machineId: record.machineId, path: record.path };
  if (record.machineId !== null && here.machineId !== null && record.machineId !== here.machineId) {
    return { kind: "copy", from: recorded, why: `the machine id is ${here.machineId}, not ${record.machineId}` };
  }
  if (record.path === here.path) {
    // A state folder restored in place from a backup is still this host.
    if (record.machineId === null && here.machineId !== null) return { kind: "record", why: "machine-id-found", ...copied };
    return { kind: "same" };
  }
  if (sameFolder(record.path, here.path)) return { kind: "record", why: "same-folder", detail: `the folder recorded as ${record.path}`, ...copied };
  const there = keyIdAt(record.path);
  if (there === "none" || (there !== undefined && there !== keyId)) {
    return { kind: "record", why: "moved", detail: `from ${record.path}, which holds ${there === "none" ? "no state folder's key" : `key ${there}`} now`, ...copied };
  }
  return {
    kind: "copy",
    from: recorded,
    why: there === keyId ? `${record.path} still holds a state folder with this key` : `${record.path} holds a key that cannot be read, so this folder cannot be told to have moved`,
  };
}
