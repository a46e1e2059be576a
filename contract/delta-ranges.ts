// Ranged deltas (issue 17): a change inside a file travels as the byte ranges
// that changed, found by 4 KiB chunk, not as whole 512 KiB blocks. Both sides
// turn a delta (ranged or of blocks) into the same pieces: what of the new
// file comes from the base the target holds, what from the delta's content.

/** Granularity at which the agent finds changes inside a file: a database page. */
export const CHUNK_SIZE = 4096;
/** Files from this size up are indexed by chunk and may travel as ranged deltas; smaller ones travel whole. */
export const MIN_DELTA_FILE_BYTES = 16 * 1024;
/** Largest file a ranged delta rebuilds: S3's largest object (the applier streams it, never holding it whole). */
export const MAX_RANGED_FILE_BYTES = 5 * 1024 ** 4;
/** Most ranges one delta lists (about 20 bytes each in a message); more are joined across the smallest gaps. */
export const MAX_DELTA_RANGES = 4096;

/** [offset, length] of bytes of the new file, length > 0. */
export type ByteRange = [offset: number, length: number];

/** Number of chunks of a file of this size. */
export function chunkCount(size: number): number {
  return Math.ceil(size / CHUNK_SIZE);
}

/** Bytes the ranges cover. */
export function rangesBytes(ranges: readonly ByteRange[]): number {
  return ranges.reduce((sum, [, length]) => sum + length, 0);
}

/** Why these ranges cannot describe a delta of a file of `size` bytes, or undefined when they can. */
export function rangesProblem(size: number, ranges: readonly ByteRange[]): string | undefined {
  let end = 0;
  for (const [i, [offset, length]] of ranges.entries()) {
    if (length < 1) return `range ${i} is empty`;
    if (offset < end) return `range ${i} starts at ${offset}, before the end of the range before it (${end}): ranges must be in increasing order and must not overlap`;
    end = offset + length;
    if (end > size) return `range ${i} ends at ${end}, past the end of a ${size}-byte file`;
  }
  return undefined;
}

/**
 * At most `max` ranges covering every byte of `ranges`: the closest
 * neighbours are joined first (the bytes between them then travel too).
 */
export function capRanges(ranges: readonly ByteRange[], max: number): ByteRange[] {
  if (ranges.length <= max) return ranges.map(([offset, length]) => [offset, length]);
  const gaps = ranges.slice(1).map(([offset], i) => {
    const [before, length] = ranges[i] ?? [0, 0];
    return { after: i, gap: offset - (before + length) };
  });
  const joined = new Set(
    gaps
      .sort((a, b) => a.gap - b.gap || a.after - b.after)
      .slice(0, ranges.length - max)
      .map((g) => g.after),
  );
  const out: ByteRange[] = [];
  for (const [i, [offset, length]] of ranges.entries()) {
    const last = out[out.length - 1];
    if (last && joined.has(i - 1)) last[1] = offset + length - last[0];
    else out.push([offset, length]);
  }
  return out;
}

/** One stretch of the new file: from the base object at the same offset, or from the delta's content at `from`. */
export type Piece = { source: "base"; offset: number; length: number } | { source: "delta"; offset: number; length: number; from: number };

/** The new file as stretches of base and of delta content, in order, covering [0, size). */
export function deltaPieces(size: number, ranges: readonly ByteRange[]): Piece[] {
  const pieces: Piece[] = [];
  let at = 0;
  let from = 0;
  for (const [offset, length] of ranges) {
    if (offset > at) pieces.push({ source: "base", offset: at, length: offset - at });
    pieces.push({ source: "delta", offset, length, from });
    from += length;
    at = offset + length;
  }
  if (at < size) pieces.push({ source: "base", offset: at, length: size - at });
  return pieces;
}
