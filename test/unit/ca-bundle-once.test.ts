// lambdas/target/http-settings.ts: a CA bundle's certificates are checked once per text, not once per client a
// process makes, and a bundle whose text changed is checked again.

import type * as Crypto from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { CaBundleError, readCaBundle } from "../../lambdas/target/http-settings.ts";
import { tempDir } from "../support/tree.ts";

/** Certificates parsed since the test began. */
let parsed = 0;

vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof Crypto>();
  class CountedCertificate extends actual.X509Certificate {
    constructor(...args: ConstructorParameters<typeof actual.X509Certificate>) {
      super(...args);
      parsed += 1;
    }
  }
  return { ...actual, X509Certificate: CountedCertificate };
});

const CERT = readFileSync(join(import.meta.dirname, "../fixtures/tls/server.crt"), "utf8");
let dir: ReturnType<typeof tempDir>;

beforeEach(() => {
  dir = tempDir("tidemark-ca-");
  parsed = 0;
});
afterEach(() => dir.remove());

it("checks a bundle's certificates once however many clients read it, and again once its text changed", () => {
  const file = join(dir.path, "bundle.pem");
  writeFileSync(file, `${CERT}\n${CERT}`);
  for (let client = 0; client < 4; client++) expect(readCaBundle(file)).toHaveLength(2);
  expect(parsed).toBe(2);
  // Changed: a broken certificate is refused, not hidden behind the bundle checked before.
  writeFileSync(file, `${CERT}\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`);
  expect(() => readCaBundle(file)).toThrow(CaBundleError);
  writeFileSync(file, CERT);
  expect(readCaBundle(file)).toHaveLength(1);
});
