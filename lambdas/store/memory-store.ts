// In-memory target store: the reference implementation of the TargetStore
// contract, and the fast store for unit tests.

import { ObjectNotFoundError, type ObjectInfo, type StoredObject, type TargetStore } from "./store.ts";

export class MemoryStore implements TargetStore {
  readonly objects = new Map<string, StoredObject>();

  async get(key: string): Promise<StoredObject | undefined> {
    return this.objects.get(key);
  }

  async head(key: string): Promise<(ObjectInfo & { meta: Record<string, string> }) | undefined> {
    const object = this.objects.get(key);
    return object && { key, size: object.body.length, meta: { ...object.meta } };
  }

  async put(key: string, body: Uint8Array, meta: Record<string, string> = {}): Promise<void> {
    this.objects.set(key, { key, body: Buffer.from(body), meta: { ...meta } });
  }

  async copy(from: string, to: string, meta: Record<string, string>): Promise<void> {
    const source = this.objects.get(from);
    if (!source) throw new ObjectNotFoundError(from);
    this.objects.set(to, { key: to, body: source.body, meta: { ...meta } });
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((key) => key.startsWith(prefix))
      // S3 lists keys in UTF-8 byte order.
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of keys) {
      const object = this.objects.get(key);
      if (object) yield { key, size: object.body.length };
    }
  }
}
