// ListObjectVersions for the local cloud's versioned buckets: keys in S3's
// (UTF-8 byte) order, each key's versions and delete markers newest first,
// paged by key-marker and version-id-marker (the listing goes on after that
// version), with common prefixes rolled up as S3 does.

import { compareKeys } from "../store/key-order.ts";
import type { Version } from "./emulator-versions.ts";

export interface VersionListOptions {
  readonly prefix: string;
  readonly delimiter?: string;
  readonly keyMarker?: string;
  readonly versionIdMarker?: string;
  readonly maxKeys: number;
}

export interface ListedVersion {
  readonly key: string;
  readonly version: Version;
  readonly isLatest: boolean;
}

export interface VersionPage {
  readonly entries: ListedVersion[];
  readonly commonPrefixes: string[];
  readonly isTruncated: boolean;
  readonly nextKeyMarker?: string;
  readonly nextVersionIdMarker?: string;
}

/** One page of the versions of keys, as S3 lists them. */
export function listVersionPage(keys: Iterable<readonly [string, readonly Version[]]>, options: VersionListOptions): VersionPage {
  const marker = options.keyMarker ?? "";
  // With a version-id marker the marker's key goes on after that version; without one, the listing starts after the key.
  const afterMarker = (key: string) => (options.versionIdMarker !== undefined ? compareKeys(key, marker) >= 0 : compareKeys(key, marker) > 0);
  const sorted = [...keys].filter(([key, versions]) => versions.length > 0 && key.startsWith(options.prefix) && (!marker || afterMarker(key))).sort(([a], [b]) => compareKeys(a, b));
  const entries: ListedVersion[] = [];
  const commonPrefixes: string[] = [];
  let last: { key: string; versionId?: string } | undefined;
  const count = () => entries.length + commonPrefixes.length;
  const truncated = (): VersionPage => ({
    entries,
    commonPrefixes,
    isTruncated: true,
    ...(last ? { nextKeyMarker: last.key, ...(last.versionId !== undefined ? { nextVersionIdMarker: last.versionId } : {}) } : {}),
  });

  for (const [key, versions] of sorted) {
    const rest = key.slice(options.prefix.length);
    const cut = options.delimiter ? rest.indexOf(options.delimiter) : -1;
    if (options.delimiter && cut >= 0) {
      const commonPrefix = options.prefix + rest.slice(0, cut + options.delimiter.length);
      // Keys come in byte order, so a prefix's keys are contiguous: compare with the last one only.
      if (commonPrefix === commonPrefixes.at(-1) || (marker && compareKeys(commonPrefix, marker) <= 0)) continue;
      if (count() >= options.maxKeys) return truncated();
      commonPrefixes.push(commonPrefix);
      last = { key: commonPrefix };
      continue;
    }
    let from = 0;
    if (key === marker && options.versionIdMarker !== undefined) {
      // A marker version since removed: nothing of this key is left to list after it.
      const at = versions.findIndex((version) => version.versionId === options.versionIdMarker);
      from = at >= 0 ? at + 1 : versions.length;
    }
    for (let i = from; i < versions.length; i++) {
      const version = versions[i];
      if (!version) continue;
      if (count() >= options.maxKeys) return truncated();
      entries.push({ key, version, isLatest: i === 0 });
      last = { key, versionId: version.versionId };
    }
  }
  return { entries, commonPrefixes, isTruncated: false };
}

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${{ "&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos" }[c] ?? "amp"};`);
}

const OWNER = "<Owner><ID>000000000000</ID><DisplayName>tidemark-local</DisplayName></Owner>";

/** The ListVersionsResult XML of a page. */
export function versionPageXml(bucket: string, options: VersionListOptions, page: VersionPage): string {
  const element = (name: string, value: string | undefined) => (value === undefined ? "" : `<${name}>${escapeXml(value)}</${name}>`);
  const lines = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`,
    element("Name", bucket),
    element("Prefix", options.prefix),
    element("KeyMarker", options.keyMarker ?? ""),
    element("VersionIdMarker", options.versionIdMarker ?? ""),
    element("NextKeyMarker", page.nextKeyMarker),
    element("NextVersionIdMarker", page.nextVersionIdMarker),
    element("MaxKeys", String(options.maxKeys)),
    element("Delimiter", options.delimiter),
    element("IsTruncated", String(page.isTruncated)),
  ];
  for (const { key, version, isLatest } of page.entries) {
    const common = `${element("Key", key)}${element("VersionId", version.versionId)}${element("IsLatest", String(isLatest))}${element("LastModified", version.lastModified.toISOString())}`;
    lines.push(
      version.deleteMarker
        ? `<DeleteMarker>${common}${OWNER}</DeleteMarker>`
        : `<Version>${common}${element("ETag", version.etag)}${element("Size", String(version.size))}<StorageClass>STANDARD</StorageClass>${OWNER}</Version>`,
    );
  }
  for (const prefix of page.commonPrefixes) lines.push(`<CommonPrefixes>${element("Prefix", prefix)}</CommonPrefixes>`);
  lines.push(`</ListVersionsResult>`);
  return lines.join("\n");
}
