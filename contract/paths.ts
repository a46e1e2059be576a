// Path and name rules shared by the agent and the applier (DESIGN 8).
// A path is rejected, never "fixed": a rewritten path could land where the
// source never wrote.

export class PathRuleError extends Error {
  override name = "PathRuleError";
}

/** S3 keys are at most 1024 bytes; this leaves room for the prefix and the set name. */
export const MAX_PATH_BYTES = 900;
export const MAX_SET_NAME_LENGTH = 64;

const SET_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

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
  if (path.includes("\0")) return "path contains a NUL byte";
  if (hasControlCharacter(path)) return "path contains a control character";
  if (path.includes("\\")) return "path contains a backslash";
  if (path.startsWith("/")) return "path is absolute";
  if (/^[A-Za-z]:/.test(path)) return "path starts with a drive letter";
  if (Buffer.byteLength(path, "utf8") > MAX_PATH_BYTES) return `path is longer than ${MAX_PATH_BYTES} bytes`;
  for (const segment of path.split("/")) {
    if (segment === "") return "path has an empty segment (leading, trailing or doubled '/')";
    if (segment === "." || segment === "..") return `path has a '${segment}' segment`;
  }
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
