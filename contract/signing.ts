// Proof of ownership per message (DESIGN 8): the agent signs every message
// body of a set with its host's Ed25519 key; the applier accepts a set's
// records only when they carry a valid signature by the key registered as the
// set's owner. The signature travels as the SQS message attribute
// SIGNATURE_ATTRIBUTE, so the body stays what it always was.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { z } from "zod";

/** Name of the SQS message attribute holding a message's signature. */
export const SIGNATURE_ATTRIBUTE = "tidemark-sig";

const SIGNATURE_VERSION = "v1";

/** A signature attribute that cannot be read: the message counts as unsigned-and-forged, never as unsigned. */
export class BadSignatureError extends Error {
  override name = "BadSignatureError";
}

/** An Ed25519 public key as the raw 32 bytes, base64url. */
const PublicKeyText = z.string().regex(/^[A-Za-z0-9_-]{43}$/, "an Ed25519 public key is 32 bytes, base64url");

/** state/<set>/owner.json: the key whose signatures the applier accepts for the set, and who held it before. */
export const OwnerRecordSchema = z.object({
  set: z.string(),
  keyId: z.string(),
  publicKey: PublicKeyText,
  since: z.string(),
  /** How the key became the owner: the first signed message of a new set, or an operator's `tidemark adopt`. */
  how: z.enum(["first-use", "adopt"]),
  /** Earlier owners, newest last. */
  previous: z
    .array(z.object({ keyId: z.string(), since: z.string(), until: z.string(), how: z.enum(["first-use", "adopt"]) }))
    .default([]),
});
export type OwnerRecord = z.infer<typeof OwnerRecordSchema>;

/** What an attribute says: who signed (their public key) and the signature. */
export interface ParsedSignature {
  readonly keyId: string;
  readonly publicKey: string;
  readonly signature: Buffer;
}

/** A host's signing key: its private half stays on the host, the public half is what the target registers. */
export interface SigningKey {
  readonly keyId: string;
  /** Raw public key, base64url. */
  readonly publicKey: string;
  readonly privateKey: KeyObject;
}

/** Short, stable name of a public key: the first 16 hex digits of the SHA-256 of its raw bytes. */
export function keyIdOf(publicKey: string): string {
  return createHash("sha256").update(Buffer.from(publicKey, "base64url")).digest("hex").slice(0, 16);
}

function rawPublicKey(key: KeyObject): string {
  const jwk = createPublicKey(key).export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new Error("internal: an Ed25519 key without its public part");
  return jwk.x;
}

function publicKeyObject(publicKey: string): KeyObject {
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: publicKey }, format: "jwk" });
}

/** A new Ed25519 key pair. */
export function generateSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  const publicKey = rawPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), publicKey, privateKey };
}

/** The key in a PKCS#8 PEM text (what owner.key holds). */
export function signingKeyFromPem(pem: string): SigningKey {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== "ed25519") throw new BadSignatureError(`the key is ${privateKey.asymmetricKeyType ?? "unknown"}, not Ed25519`);
  const publicKey = rawPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), publicKey, privateKey };
}

export function signingKeyToPem(key: SigningKey): string {
  return key.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}

/** The bytes a signature covers: the version, the set (the message group) and the exact body. */
function signedBytes(set: string, body: string): Buffer {
  return Buffer.concat([Buffer.from(`tidemark-sig/${SIGNATURE_VERSION}\n${set}\n`, "utf8"), Buffer.from(body, "utf8")]);
}

/** The attribute value for a message body of a set: `v1.<public key>.<signature>`, base64url. */
export function signMessage(key: SigningKey, set: string, body: string): string {
  const signature = sign(null, signedBytes(set, body), key.privateKey);
  return `${SIGNATURE_VERSION}.${key.publicKey}.${signature.toString("base64url")}`;
}

/** Reads an attribute value; throws BadSignatureError when it is not one this version writes. */
export function parseSignature(value: string): ParsedSignature {
  const [version, publicKey, signature, ...rest] = value.split(".");
  if (version !== SIGNATURE_VERSION || rest.length > 0 || publicKey === undefined || signature === undefined) {
    throw new BadSignatureError(`the ${SIGNATURE_ATTRIBUTE} attribute is not a ${SIGNATURE_VERSION} signature`);
  }
  if (!PublicKeyText.safeParse(publicKey).success || !/^[A-Za-z0-9_-]{86}$/.test(signature)) {
    throw new BadSignatureError(`the ${SIGNATURE_ATTRIBUTE} attribute holds no Ed25519 key and signature`);
  }
  return { keyId: keyIdOf(publicKey), publicKey, signature: Buffer.from(signature, "base64url") };
}

/** Whether the signature is the public key's over this set and body. */
export function signatureValid(parsed: ParsedSignature, set: string, body: string): boolean {
  try {
    return verify(null, signedBytes(set, body), publicKeyObject(parsed.publicKey), parsed.signature);
  } catch {
    // A public key that is not a point on the curve: no valid signature.
    return false;
  }
}
