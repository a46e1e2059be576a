// The local cloud corrects faults of the fauxqs emulator in its classes
// (emulator-listing.ts, emulator-large-objects.ts, emulator-multipart.ts) and
// adds bucket versioning to its store (emulator-versions.ts). Those classes are not in
// fauxqs's exports: they are reached by their files next to its entry point,
// and checked for the methods a patch replaces, so a fauxqs release that moved
// them fails the local cloud's start with a clear error instead of running
// unpatched.

export class EmulatorPatchError extends Error {
  override name = "EmulatorPatchError";
}

function member(value: unknown, name: string): unknown {
  return (typeof value === "object" && value !== null) || typeof value === "function" ? Reflect.get(value, name) : undefined;
}

function hasMethods<T extends object>(value: unknown, methods: readonly (keyof T & string)[]): value is T {
  return typeof value === "object" && value !== null && methods.every((method) => typeof member(value, method) === "function");
}

/** The prototype of fauxqs's class `name` in dist/`file`, checked to have every method in `methods`. */
export async function fauxqsPrototype<T extends object>(file: string, name: string, methods: readonly (keyof T & string)[]): Promise<T> {
  const module: unknown = await import(new URL(file, import.meta.resolve("fauxqs")).href);
  const prototype = member(member(module, name), "prototype");
  if (!hasMethods<T>(prototype, methods)) {
    throw new EmulatorPatchError(`this fauxqs version has no ${name} with ${methods.join(", ")} in dist/${file.replace(/^\.\//, "")}: the local cloud cannot correct its emulator (lambdas/local/)`);
  }
  return prototype;
}

/** Makes fauxqs's S3Error (dist/common/errors.js): the only error its S3 routes answer as an S3 error rather than a 500. */
export async function fauxqsS3Error(): Promise<(code: string, message: string, status: number) => Error> {
  const module: unknown = await import(new URL("./common/errors.js", import.meta.resolve("fauxqs")).href);
  const S3Error = member(module, "S3Error");
  if (typeof S3Error !== "function") throw new EmulatorPatchError("this fauxqs version has no S3Error in dist/common/errors.js: the local cloud cannot correct its emulator (lambdas/local/)");
  return (code, message, status) => {
    const error: unknown = Reflect.construct(S3Error, [code, message, status]);
    if (!(error instanceof Error)) throw new EmulatorPatchError("fauxqs's S3Error made no Error: the local cloud cannot correct its emulator (lambdas/local/)");
    return error;
  };
}

interface ClaimableStore {
  emptyBucket(this: object, name: string): void;
}

let claiming: ((store: object) => void) | undefined;
let claimPatched: Promise<void> | undefined;

async function patchClaim(): Promise<void> {
  const prototype = await fauxqsPrototype<ClaimableStore>("./s3/s3Store.js", "S3Store", ["emptyBucket"]);
  const emptyBucket = prototype.emptyBucket;
  // fauxqs's server hands out no store: its emptyBucket(name) calls the store's, which answers here while claiming.
  prototype.emptyBucket = function emptyBucketOrClaim(name) {
    if (claiming) {
      claiming(this);
      return;
    }
    emptyBucket.call(this, name);
  };
}

/** The S3 store of a started fauxqs server, checked to have `methods`. */
export async function s3StoreOf<T extends object>(server: { emptyBucket(name: string): void }, methods: readonly (keyof T & string)[]): Promise<T> {
  claimPatched ??= patchClaim();
  await claimPatched;
  let store: object | undefined;
  claiming = (claimed) => {
    store = claimed;
  };
  try {
    server.emptyBucket("");
  } finally {
    claiming = undefined;
  }
  if (!hasMethods<T>(store, methods)) throw new EmulatorPatchError("the fauxqs server did not hand out its S3 store: the local cloud cannot correct its emulator (lambdas/local/)");
  return store;
}
