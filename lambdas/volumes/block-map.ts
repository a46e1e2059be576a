// A volume set's live block map (blocks/<set>/map/): which content each block
// of the volume holds now, by sha256; block content lives once per hash under
// blocks/<set>/data/. Pages are read when first needed and written back
// together, before the checkpoint that covers the records that changed them,
// so a retried message finds the map as it left it or as it was before.

import { z } from "zod";
import {
  BLOCK_MAP_PAGE_BLOCKS,
  blockDataPrefix,
  blockMapKey,
  blockMapPrefix,
  volumeStateKey,
  VolumeStateSchema,
  type VolumeState,
} from "../../contract/layout.ts";
import type { VolumeBlockEntry } from "../../contract/tasks.ts";
import { blockCount, blockLength } from "../../contract/wire.ts";
import type { TargetStore } from "../store/store.ts";

const PageSchema = z.object({ blocks: z.record(z.string().regex(/^\d+$/), z.string().regex(/^[0-9a-f]{64}$/)) });

type Page = Map<number, string>;

/** Replaced blocks before a sweep is worth its listing (512 MiB of content at most is left behind on small volumes). */
const SWEEP_MIN_REPLACED = 1024;

function pageOf(index: number): number {
  return Math.floor(index / BLOCK_MAP_PAGE_BLOCKS);
}

export class VolumeMap {
  readonly set: string;
  readonly #store: TargetStore;
  readonly #state: VolumeState;
  /** False until the set received a block: a set without one is a file set. */
  #exists: boolean;
  readonly #pages = new Map<number, Promise<Page>>();
  readonly #dirty = new Set<number>();
  #stateDirty = false;

  private constructor(store: TargetStore, set: string, state: VolumeState, exists: boolean) {
    this.#store = store;
    this.set = set;
    this.#state = state;
    this.#exists = exists;
  }

  /** The map of a set as the store holds it (an empty one when the set has no volume yet). */
  static async open(store: TargetStore, set: string): Promise<VolumeMap> {
    const body = (await store.get(volumeStateKey(set)))?.body;
    if (!body) return new VolumeMap(store, set, { size: 0, replaced: 0 }, false);
    return new VolumeMap(store, set, VolumeStateSchema.parse(JSON.parse(body.toString("utf8"))), true);
  }

  /** True when the set is a volume (it received blocks). */
  get exists(): boolean {
    return this.#exists;
  }

  get state(): Readonly<VolumeState> {
    return this.#state;
  }

  /** Records the EBS snapshot the next one builds on; written with the next flush. */
  setEbs(ebs: NonNullable<VolumeState["ebs"]>): void {
    this.#state.ebs = ebs;
    this.#stateDirty = true;
  }

  #page(page: number): Promise<Page> {
    let loading = this.#pages.get(page);
    if (!loading) {
      // One read per page even when blocks of it are applied at once.
      loading = this.#store.get(blockMapKey(this.set, page)).then((object) => {
        if (!object) return new Map<number, string>();
        const parsed = PageSchema.parse(JSON.parse(object.body.toString("utf8")));
        return new Map(Object.entries(parsed.blocks).map(([index, sha]) => [Number(index), sha]));
      });
      this.#pages.set(page, loading);
    }
    return loading;
  }

  /** Pages that exist in the store, or were touched here. */
  async #allPages(): Promise<number[]> {
    const pages = new Set(this.#pages.keys());
    const prefix = blockMapPrefix(this.set);
    for await (const object of this.#store.list(prefix)) pages.add(Number(object.key.slice(prefix.length).replace(/\.json$/, "")));
    return [...pages].sort((a, b) => a - b);
  }

  /**
   * Block `index` now holds the content with this sha256, or zeros (null).
   * Returns the content it held before (undefined for zeros).
   */
  async write(index: number, sha256: string | null, volumeSize: number): Promise<string | undefined> {
    await this.#resize(volumeSize);
    const page = await this.#page(pageOf(index));
    const previous = page.get(index);
    if (sha256 === null) page.delete(index);
    else page.set(index, sha256);
    if (previous !== sha256) {
      this.#dirty.add(pageOf(index));
      if (previous !== undefined) {
        this.#state.replaced += 1;
        this.#stateDirty = true;
      }
    }
    return previous;
  }

  /** A volume that shrank loses its blocks past the new end. */
  async #resize(volumeSize: number): Promise<void> {
    if (!this.#exists) {
      this.#exists = true;
      this.#stateDirty = true;
    }
    if (volumeSize === this.#state.size) return;
    const shrank = volumeSize < this.#state.size;
    this.#state.size = volumeSize;
    this.#stateDirty = true;
    if (!shrank) return;
    const count = blockCount(volumeSize);
    for (const number of await this.#allPages()) {
      const page = await this.#page(number);
      for (const index of page.keys()) {
        if (index < count) continue;
        page.delete(index);
        this.#dirty.add(number);
      }
    }
  }

  /** Forgets every block (a resync: the agent sends every block that is not zeros again). */
  async clear(): Promise<void> {
    for (const number of await this.#allPages()) {
      const page = await this.#page(number);
      if (page.size === 0) continue;
      this.#state.replaced += page.size;
      this.#stateDirty = true;
      page.clear();
      this.#dirty.add(number);
    }
  }

  /** Writes the pages and state changed since the last flush. */
  async flush(): Promise<void> {
    for (const number of [...this.#dirty].sort((a, b) => a - b)) {
      const page = await this.#page(number);
      const blocks = Object.fromEntries([...page.entries()].sort((a, b) => a[0] - b[0]).map(([index, sha]) => [String(index), sha]));
      if (page.size === 0) await this.#store.delete(blockMapKey(this.set, number));
      else await this.#store.put(blockMapKey(this.set, number), Buffer.from(JSON.stringify({ blocks })), {});
    }
    this.#dirty.clear();
    if (this.#stateDirty) await this.#writeState();
  }

  async #writeState(): Promise<void> {
    await this.#store.put(volumeStateKey(this.set), Buffer.from(JSON.stringify(this.#state, null, 2)), {});
    this.#stateDirty = false;
  }

  /** Every block holding data, in index order. */
  async entries(): Promise<VolumeBlockEntry[]> {
    const entries: VolumeBlockEntry[] = [];
    for (const number of await this.#allPages()) {
      const page = await this.#page(number);
      for (const [index, sha256] of [...page.entries()].sort((a, b) => a[0] - b[0])) {
        entries.push({ index, sha256, size: blockLength(this.#state.size, index) });
      }
    }
    return entries;
  }

  /**
   * Deletes block content that neither the live map nor `keep` (the blocks of
   * the snapshots the set keeps) refers to. Runs inline in the set's stream,
   * after a flush, so nothing is written meanwhile.
   */
  async sweep(keep: ReadonlySet<string>): Promise<{ deleted: number; bytes: number }> {
    const referenced = new Set(keep);
    for (const entry of await this.entries()) referenced.add(entry.sha256);
    const prefix = blockDataPrefix(this.set);
    let deleted = 0;
    let bytes = 0;
    for await (const object of this.#store.list(prefix)) {
      if (referenced.has(object.key.slice(prefix.length))) continue;
      await this.#store.delete(object.key);
      deleted += 1;
      bytes += object.size;
    }
    this.#state.replaced = 0;
    await this.#writeState();
    return { deleted, bytes };
  }

  /** True when enough content was replaced since the last sweep that one is worth its listing. */
  get sweepDue(): boolean {
    return this.#state.replaced >= Math.max(SWEEP_MIN_REPLACED, Math.floor(blockCount(this.#state.size) / 4));
  }
}
