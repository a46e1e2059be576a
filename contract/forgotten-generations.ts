// Generations a set left beyond the last MAX_GENERATIONS_KEPT (lambdas/applier/generations.ts)
// are not forgotten: a captured message of one, replayed, would otherwise be
// taken for a new generation, restart the chain at its resync and lock the
// real host out. Each is kept as a short digest of its id (a fixed 12 hex
// digits, whatever the id), enough to refuse it for good.

import { createHash } from "node:crypto";
import type { SetStatus } from "./layout.ts";

/** The digest a forgotten generation is kept as: 48 bits of SHA-256 of its id (a new random id matches one by chance about never). */
export function generationDigest(id: string): string {
  return createHash("sha256").update(id).digest("hex").slice(0, 12);
}

/** Keeps the digests of generations dropped from `status.generations`. */
export function rememberForgotten(status: SetStatus, dropped: readonly { readonly id: string }[]): void {
  if (dropped.length === 0) return;
  const kept = new Set(status.forgottenGenerations ?? []);
  for (const g of dropped) kept.add(generationDigest(g.id));
  status.forgottenGenerations = [...kept];
}

/** Whether the set left generation `id` so long ago that only its digest is kept. */
export function wasForgotten(status: SetStatus, id: string): boolean {
  return status.forgottenGenerations?.includes(generationDigest(id)) ?? false;
}
