// Config objects that refuse keys they do not know: a typo such as `exclued`
// must be an error naming the key meant, never a setting silently ignored.

import { z } from "zod";
import { didYouMean } from "./suggest.ts";

function unknownKeys(keys: readonly string[], known: readonly string[]): string {
  const each = keys.map((key) => `"${key}"${didYouMean(key, known)}`);
  const list = known.map((k) => `"${k}"`).join(", ");
  return `unknown key${keys.length > 1 ? "s" : ""} ${each.join(", ")}; known keys here: ${list}`;
}

/** z.strictObject whose unknown-key error names the closest known key. Use it for every object of the config. */
export function strictObject<T extends z.core.$ZodLooseShape>(shape: T) {
  const known = Object.keys(shape);
  return z.strictObject(shape, { error: (issue) => (issue.code === "unrecognized_keys" ? unknownKeys(issue.keys, known) : undefined) });
}

/** A validation problem's place (`sets.0.exclude`) and message, looking into a union for the branch the input meant. */
export function describeIssue(issue: z.core.$ZodIssue, base: readonly PropertyKey[] = []): { path: string; message: string } {
  const path = [...base, ...issue.path];
  if (issue.code === "invalid_union" && issue.errors.length > 0) {
    // The branch with the fewest complaints is the one meant: a tree set with a typo fails the volume branch on "type" as well.
    let meant: readonly z.core.$ZodIssue[] | undefined;
    for (const branch of issue.errors) if (meant === undefined || branch.length < meant.length) meant = branch;
    const first = meant?.[0];
    if (first) return describeIssue(first, path);
  }
  return { path: path.length > 0 ? path.map(String).join(".") : "(top level)", message: issue.message };
}
