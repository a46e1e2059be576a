// Path and name rules shared by the agent and the applier (DESIGN 8).
// A path is rejected, never "fixed": a rewritten path could land where the
// source never wrote.

export class PathRuleError extends Error {
  override name = "PathRuleError";
}

/**
 * Why a path holding half of a UTF-16 surrogate pair is refused: it has no UTF-8 form, so it can be no S3 key (encoding
 * one throws), and a file name read on Linux never holds one (bytes that are not UTF-8 read back as U+FFFD).
 */
export const LONE_SURROGATE = "path has a lone surrogate (half of a UTF-16 pair, which has no UTF-8 form)";

/** S3 keys are at most 1024 bytes; this leaves room for the prefix and the set name. */
export const MAX_PATH_BYTES = 900;
export const MAX_SET_NAME_LENGTH = 64;

const SET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Why `name` cannot be a set name, or undefined when it can. */
export function setNameProblem(name: string): string | undefined {
  if (name.length === 0) return "set name is empty";
  if (name.length > MAX_SET_NAME_LENGTH) return `set name is longer than ${MAX_SET_NAME_LENGTH} characters`;
  if (!SET_NAME.test(name)) return `set name "${name}" may only hold letters, digits, '_', '.', '-' and must start with a letter or digit`;
  if (name.includes("..")) return `set name "${name}" contains ".."`;
  return undefined;
}

/**
 * Why `path` cannot be a path inside a set, or undefined when it can.
 * A set path is relative, POSIX-separated, and every segment is a real name.
 */
export function setPathProblem(path: string): string | undefined {
  if (path.length === 0) return "path is empty";
  // One pass over the path (a scan checks every entry of a set): what it holds, its UTF-8 length, its first bad segment.
  let nul = false;
  let control = false;
  let backslash = false;
  let lone = false;
  let bytes = 0;
  let segment: string | undefined;
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    const code = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (code === 0x2f) {
      if (segment === undefined) {
        const length = i - start;
        if (length === 0) segment = "";
        else if (length <= 2 && path.charCodeAt(start) === 0x2e && (length === 1 || path.charCodeAt(start + 1) === 0x2e)) segment = path.slice(start, i);
      }
      start = i + 1;
    }
    if (i === path.length) break;
    if (code === 0) nul = true;
    if (code < 0x20 || code === 0x7f) control = true;
    if (code === 0x5c) backslash = true;
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code < 0xdc00 && i + 1 < path.length && (path.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i += 1;
    } else {
      if (code >= 0xd800 && code < 0xe000) lone = true;
      bytes += 3;
    }
  }
  if (nul) return "path contains a NUL byte";
  if (control) return "path contains a control character";
  if (backslash) return "path contains a backslash";
  if (lone) return LONE_SURROGATE;
  if (path.startsWith("/")) return "path is absolute";
  if (/^[A-Za-z]:/.test(path)) return "path starts with a drive letter";
  if (bytes > MAX_PATH_BYTES) return `path is longer than ${MAX_PATH_BYTES} bytes`;
  if (segment === "") return "path has an empty segment (leading, trailing or doubled '/')";
  if (segment !== undefined) return `path has a '${segment}' segment`;
  return undefined;
}

export function assertSetName(name: string): string {
  const problem = setNameProblem(name);
  if (problem) throw new PathRuleError(problem);
  return name;
}

export function assertSetPath(path: string): string {
  const problem = setPathProblem(path);
  if (problem) throw new PathRuleError(`${problem}: ${JSON.stringify(path)}`);
  return path;
}

/** The parent of a set path, or undefined for a top-level entry. */
export function parentOf(path: string): string | undefined {
  const cut = path.lastIndexOf("/");
  return cut < 0 ? undefined : path.slice(0, cut);
}
