// S3 lists keys in UTF-8 byte order. JavaScript compares strings by UTF-16
// code unit, which differs for characters above U+FFFF against U+E000-U+FFFF,
// and localeCompare ignores case: neither is S3's order.

/** Orders UTF-16 code units as their code points' UTF-8 bytes order: surrogates above U+E000-U+FFFF. */
function byteRank(unit: number): number {
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

/** Negative, zero or positive as key a sorts before, equal to or after key b in S3's (UTF-8 byte) order. */
export function compareKeys(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    return x >= 0xd800 && y >= 0xd800 ? byteRank(x) - byteRank(y) : x - y;
  }
  return a.length - b.length;
}
