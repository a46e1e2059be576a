// fauxqs 2.x sorts a listing page with localeCompare (case-insensitive) but
// continues the next page after the last key by code-unit comparison, so past
// 1,000 keys of mixed case, keys at page boundaries are skipped or repeated.
// S3 lists in UTF-8 byte order; this replaces the emulator's listing with one
// that does, pages included. The patch applies to fauxqs's store class, once
// per process, before an emulator serves a request.

import { compareKeys } from "../store/key-order.ts";
import { fauxqsPrototype } from "./fauxqs-internals.ts";

interface ListedObject {
  readonly key: string;
}

interface ListOptions {
  readonly prefix?: string;
  readonly delimiter?: string;
  readonly maxKeys?: number;
  readonly startAfter?: string;
  readonly marker?: string;
}

interface ListResult {
  readonly objects: ListedObject[];
  readonly commonPrefixes: string[];
  readonly isTruncated: boolean;
}

/** The part of fauxqs's S3 store (dist/s3/s3Store.js) the listing reads. */
interface EmulatorBucketStore {
  readonly buckets: Map<string, Map<string, ListedObject>>;
}

type ListObjects = (this: EmulatorBucketStore, bucket: string, options?: ListOptions) => ListResult;

interface EmulatorStorePrototype {
  listObjects: ListObjects;
}

/** Code units from which UTF-16 order and UTF-8 byte order differ (key-order.ts). */
const SURROGATES_AND_ABOVE = /[\ud800-\uffff]/;

/** The objects after startAfter, in byte order: by the engine's own string order when no key needs more. */
function inByteOrder(objects: ListedObject[], startAfter: string): ListedObject[] {
  if (!SURROGATES_AND_ABOVE.test(startAfter) && !objects.some((object) => SURROGATES_AND_ABOVE.test(object.key))) {
    return objects.filter((object) => object.key > startAfter).sort((a, b) => (a.key < b.key ? -1 : 1));
  }
  return objects.filter((object) => compareKeys(object.key, startAfter) > 0).sort((a, b) => compareKeys(a.key, b.key));
}

/** One page of keys after startAfter in byte order, with common prefixes rolled up as S3 does. */
function listPage(objects: Iterable<ListedObject>, options: ListOptions = {}): ListResult {
  const prefix = options.prefix ?? "";
  const maxKeys = options.maxKeys ?? 1000;
  const startAfter = options.startAfter || options.marker || "";
  const sorted = inByteOrder([...objects].filter((object) => object.key.startsWith(prefix)), startAfter);
  const page: ListedObject[] = [];
  const commonPrefixes: string[] = [];
  let prefixesAfterLastObject = 0;
  const truncated = (): ListResult => {
    // fauxqs continues after the page's last object when it has one: prefixes after it move to the next page.
    if (page.length > 0) commonPrefixes.splice(commonPrefixes.length - prefixesAfterLastObject);
    return { objects: page, commonPrefixes, isTruncated: true };
  };
  for (const object of sorted) {
    const rest = object.key.slice(prefix.length);
    const cut = options.delimiter ? rest.indexOf(options.delimiter) : -1;
    if (options.delimiter && cut >= 0) {
      const commonPrefix = prefix + rest.slice(0, cut + options.delimiter.length);
      // Keys come in byte order, so a prefix's keys are contiguous: compare with the last one only.
      if (commonPrefix === commonPrefixes.at(-1) || (startAfter && compareKeys(commonPrefix, startAfter) <= 0)) continue;
      if (page.length + commonPrefixes.length >= maxKeys) return truncated();
      commonPrefixes.push(commonPrefix);
      prefixesAfterLastObject++;
      continue;
    }
    if (page.length + commonPrefixes.length >= maxKeys) return truncated();
    page.push(object);
    prefixesAfterLastObject = 0;
  }
  return { objects: page, commonPrefixes, isTruncated: false };
}

async function patchListing(): Promise<void> {
  const prototype = await fauxqsPrototype<EmulatorStorePrototype>("./s3/s3Store.js", "S3Store", ["listObjects"]);
  const original = prototype.listObjects;
  prototype.listObjects = function listObjectsInByteOrder(bucket, options) {
    const objects = this.buckets.get(bucket);
    // A missing bucket: fauxqs's own listing answers NoSuchBucket.
    if (!objects) return original.call(this, bucket, options);
    return listPage(objects.values(), options);
  };
}

let patched: Promise<void> | undefined;

/** Makes every fauxqs emulator in this process list in S3's byte order; safe to call many times. */
export function listInByteOrder(): Promise<void> {
  patched ??= patchListing();
  return patched;
}
