// setPathProblem checks every path a scan finds in one pass over the path: it
// must answer exactly what the rules below, checked one after the other, say.

import { expect, it } from "vitest";
import { LONE_SURROGATE, MAX_PATH_BYTES, setPathProblem } from "../../contract/paths.ts";

/** The rules one after the other, as the first problem found names them. */
function byTheRules(path: string): string | undefined {
  if (path.length === 0) return "path is empty";
  if (path.includes("\0")) return "path contains a NUL byte";
  if ([...path].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return "path contains a control character";
  if (path.includes("\\")) return "path contains a backslash";
  if (!path.isWellFormed()) return LONE_SURROGATE;
  if (path.startsWith("/")) return "path is absolute";
  if (/^[A-Za-z]:/.test(path)) return "path starts with a drive letter";
  if (Buffer.byteLength(path, "utf8") > MAX_PATH_BYTES) return `path is longer than ${MAX_PATH_BYTES} bytes`;
  for (const segment of path.split("/")) {
    if (segment === "") return "path has an empty segment (leading, trailing or doubled '/')";
    if (segment === "." || segment === "..") return `path has a '${segment}' segment`;
  }
  return undefined;
}

it("names the same first problem as the rules checked one by one, for every kind of path", () => {
  const near = (unit: string, bytes: number) => unit.repeat(Math.floor(bytes / Buffer.byteLength(unit, "utf8")));
  const paths = [
    "", "a", "a/b", "docs/a.txt", ".", "..", "a/.", "a/..", "./a", "../a", "a/./b", "a/../b", ".a", "..a", "a.", "a..", "...", "a/...",
    "/", "/a", "a/", "a//b", "//", "/../", "a\\b", "a\0b", "a\nb", "a\u007fb", "a\u001fb", "\0/", "\\/..", "C:", "c:/x", "C:\\x", "1:",
    "\u00e9/\u4e2d/\u{1f600}", "\ud83d", "a/\ude00/b", "x\ud83d\ude00", "x\ud83d/", "\ufffd", "a/\ud800", "\udfff", "\ud800\ud800", "\ude00\ud83d", "\ud83d\ude00\ude00", "\ud7ff\ue000", "a\\\ud800",
    near("a", MAX_PATH_BYTES), near("a", MAX_PATH_BYTES + 1), `${near("a", MAX_PATH_BYTES - 1)}\u00e9`, `${near("a", MAX_PATH_BYTES - 2)}\u00e9`,
    near("\u4e2d", MAX_PATH_BYTES), `${near("\u4e2d", MAX_PATH_BYTES - 3)}\u{1f600}`, near("\u{1f600}", MAX_PATH_BYTES), `${near("\u{1f600}", MAX_PATH_BYTES)}a`,
    near("\ud83d", MAX_PATH_BYTES), `${near("\ud83d", MAX_PATH_BYTES)}x`, `${near("a/", MAX_PATH_BYTES + 2)}`, `${near("a", MAX_PATH_BYTES + 5)}/../\\`,
  ];
  for (const path of paths) expect(setPathProblem(path), JSON.stringify(path)).toBe(byTheRules(path));
});
