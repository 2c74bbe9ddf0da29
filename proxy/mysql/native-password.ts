/**
 * `mysql_native_password` (MySQL 4.1 authentication), terminated in the proxy without a stored
 * plaintext. The server, the catalog and the proxy hold the verifier `SHA1(SHA1(password))` (what
 * MariaDB's `mysql.global_priv` stores, printed as `*<40 hex>` by `PASSWORD()`). A client answers
 * the 20-byte scramble with `SHA1(password) XOR SHA1(scramble + verifier)`; from that reply the
 * proxy both checks the login (`SHA1(recovered) = verifier`) and recovers `SHA1(password)`, which
 * is all it needs to answer the *server's* scramble as the same user. Nothing reusable is kept:
 * the recovered hash lives in the session for the logins it makes.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const NATIVE_PASSWORD = "mysql_native_password";
const SCRAMBLE_BYTES = 20;

const sha1 = (...parts: Buffer[]): Buffer => {
  const h = createHash("sha1");
  for (const p of parts) h.update(p);
  return h.digest();
};

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** The verifier of `password`, as MariaDB prints it: `*` and 40 upper-case hex digits. */
export function nativeVerifier(password: string): string {
  return `*${sha1(sha1(Buffer.from(password, "utf8"))).toString("hex").toUpperCase()}`;
}

/** The 20 verifier bytes of a `*<hex>` string; undefined when it is not one. */
export function parseNativeVerifier(v: string): Buffer | undefined {
  return /^\*[0-9A-Fa-f]{40}$/.test(v) ? Buffer.from(v.slice(1), "hex") : undefined;
}

/** A scramble for a handshake: 20 bytes, none of them NUL (clients read it as a C string). */
export function newScramble(): Buffer {
  const s = randomBytes(SCRAMBLE_BYTES);
  for (let i = 0; i < s.length; i++) s[i] = (s[i]! % 127) + 1;
  return s;
}

/**
 * Check a client's reply to `scramble` against the verifier. Returns `SHA1(password)` when it
 * matches, undefined when it does not (an empty reply, which is an empty password, never matches
 * a verifier).
 */
export function checkNativeReply(scramble: Buffer, reply: Buffer, verifier: Buffer): Buffer | undefined {
  if (reply.length !== SCRAMBLE_BYTES || verifier.length !== SCRAMBLE_BYTES) return undefined;
  const stage1 = xor(reply, sha1(scramble.subarray(0, SCRAMBLE_BYTES), verifier));
  return timingSafeEqual(sha1(stage1), verifier) ? stage1 : undefined;
}

/** The reply to a server's `scramble` from `SHA1(password)`. */
export function nativeReply(scramble: Buffer, passwordSha1: Buffer): Buffer {
  return xor(passwordSha1, sha1(scramble.subarray(0, SCRAMBLE_BYTES), sha1(passwordSha1)));
}
