// A listing is trusted only as far as it proves itself: S3 lists keys once
// each, in UTF-8 byte order, and a truncated page names where to continue. A
// store (or emulator) that breaks this would hand snapshots, verify and prune
// a partial picture; the listing fails instead.

import { compareKeys } from "./key-order.ts";

export class BrokenListingError extends Error {
  override name = "BrokenListingError";
}

/** Follows one listing of bucket/prefix page by page. */
export class ListingCheck {
  readonly #where: string;
  readonly #prefix: string;
  readonly #tokens = new Set<string>();
  #last: string | undefined;

  constructor(bucket: string, prefix: string) {
    this.#where = `the listing of ${bucket}/${prefix}`;
    this.#prefix = prefix;
  }

  /** The next key listed; throws when it is outside the prefix, repeated or out of order. */
  key(key: string): void {
    if (!key.startsWith(this.#prefix)) throw new BrokenListingError(`${this.#where} returned ${JSON.stringify(key)}, outside the prefix`);
    const last = this.#last;
    if (last !== undefined) {
      const order = compareKeys(key, last);
      if (order === 0) throw new BrokenListingError(`${this.#where} returned ${JSON.stringify(key)} twice: the store's paging repeats keys, so it may skip others too`);
      if (order < 0) {
        throw new BrokenListingError(
          `${this.#where} returned ${JSON.stringify(key)} after ${JSON.stringify(last)}, out of byte order: the store's paging cannot be trusted to list every key`,
        );
      }
    }
    this.#last = key;
  }

  /** The token of the next page, or undefined when the listing is complete; throws when a truncated page gives no new token. */
  nextPage(truncated: boolean, token: string | undefined): string | undefined {
    if (!truncated) return undefined;
    if (!token) throw new BrokenListingError(`${this.#where} was cut short: a truncated page gave no continuation token`);
    if (this.#tokens.has(token)) throw new BrokenListingError(`${this.#where} returned the same continuation token twice: it would list forever`);
    this.#tokens.add(token);
    return token;
  }
}
