/**
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it (spec §55.3.1 "SCRAM-SHA-256
 * Authentication"): the proxy is the *server* for clients, checking their proof against the
 * verifier kept in the control catalog, and the *client* for the backend, where it proves the
 * same role with the ClientKey recovered from the client's proof. The backend role carries the
 * same verifier, so no plaintext password exists anywhere: not in the catalog, not in the proxy.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

export const MECHANISM = "SCRAM-SHA-256";
const DEFAULT_ITERATIONS = 4096;

export interface ScramVerifier {
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

const hmac = (key: Buffer, data: string | Buffer) => createHmac("sha256", key).update(data).digest();
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest();

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/**
 * PostgreSQL's stored format: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
 * The password is used as given (PostgreSQL applies SASLprep, which leaves ASCII unchanged;
 * tenantfleet generates ASCII passwords).
 */
export function makeVerifier(password: string, opts: { salt?: Buffer; iterations?: number } = {}): string {
  const salt = opts.salt ?? randomBytes(16);
  const iterations = opts.iterations ?? DEFAULT_ITERATIONS;
  const salted = pbkdf2Sync(Buffer.from(password.normalize("NFKC"), "utf8"), salt, iterations, 32, "sha256");
  const clientKey = hmac(salted, "Client Key");
  const storedKey = sha256(clientKey);
  const serverKey = hmac(salted, "Server Key");
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

export function parseVerifier(text: string): ScramVerifier {
  const m = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/.exec(text);
  if (!m) throw new Error("not a SCRAM-SHA-256 verifier (expected SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>)");
  const v = {
    iterations: Number(m[1]),
    salt: Buffer.from(m[2]!, "base64"),
    storedKey: Buffer.from(m[3]!, "base64"),
    serverKey: Buffer.from(m[4]!, "base64"),
  };
  if (v.storedKey.length !== 32 || v.serverKey.length !== 32) throw new Error("SCRAM verifier keys must be 32 bytes");
  return v;
}

/** `k=v,k=v` attributes of a SCRAM message. */
function attributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(",")) {
    const eq = part.indexOf("=");
    if (eq === 1) out.set(part[0]!, part.slice(2));
  }
  return out;
}

export class ScramError extends Error {
  override name = "ScramError";
}

/**
 * The server side of one exchange. `first()` takes the client-first-message and returns the
 * server-first-message; `final()` takes the client-final-message and returns the ClientKey (for
 * the backend login) and the server-final-message, or throws ScramError on a wrong proof.
 */
export class ScramServer {
  private clientFirstBare = "";
  private serverFirst = "";
  private nonce = "";
  private gs2 = "";

  constructor(private readonly verifier: ScramVerifier) {}

  first(clientFirst: string): string {
    // gs2-header: "n,," (no channel binding) or "y,," (client could, server did not offer it).
    const m = /^([ny]),(?:a=[^,]*)?,(.*)$/.exec(clientFirst);
    if (!m) throw new ScramError(clientFirst.startsWith("p=") ? "channel binding is not supported" : "malformed SCRAM client-first-message");
    this.gs2 = clientFirst.slice(0, clientFirst.length - m[2]!.length);
    this.clientFirstBare = m[2]!;
    const clientNonce = attributes(this.clientFirstBare).get("r");
    if (!clientNonce) throw new ScramError("SCRAM client-first-message has no nonce");
    this.nonce = clientNonce + randomBytes(18).toString("base64");
    this.serverFirst = `r=${this.nonce},s=${this.verifier.salt.toString("base64")},i=${this.verifier.iterations}`;
    return this.serverFirst;
  }

  final(clientFinal: string): { clientKey: Buffer; serverFinal: string } {
    const attrs = attributes(clientFinal);
    const proofB64 = attrs.get("p");
    if (attrs.get("r") !== this.nonce || !proofB64) throw new ScramError("SCRAM nonce mismatch");
    if (attrs.get("c") !== Buffer.from(this.gs2).toString("base64")) throw new ScramError("SCRAM channel binding mismatch");
    const withoutProof = clientFinal.slice(0, clientFinal.lastIndexOf(",p="));
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const proof = Buffer.from(proofB64, "base64");
    if (proof.length !== 32) throw new ScramError("SCRAM proof has the wrong length");
    const clientKey = xor(proof, hmac(this.verifier.storedKey, authMessage));
    if (!timingSafeEqual(sha256(clientKey), this.verifier.storedKey)) throw new ScramError("password authentication failed");
    const serverSignature = hmac(this.verifier.serverKey, authMessage);
    return { clientKey, serverFinal: `v=${serverSignature.toString("base64")}` };
  }
}

/** A stand-in exchange for an unknown role: same messages, always fails (no user enumeration). */
export function decoyVerifier(): ScramVerifier {
  return { iterations: DEFAULT_ITERATIONS, salt: randomBytes(16), storedKey: randomBytes(32), serverKey: randomBytes(32) };
}

/** The client side, proving a role with its ClientKey instead of its password. */
export class ScramClient {
  private readonly clientNonce = randomBytes(18).toString("base64");
  private clientFirstBare = "";
  private serverFirst = "";
  private authMessage = "";

  constructor(
    private readonly clientKey: Buffer,
    private readonly verifier: ScramVerifier,
  ) {}

  first(): string {
    this.clientFirstBare = `n=,r=${this.clientNonce}`;
    return `n,,${this.clientFirstBare}`;
  }

  final(serverFirst: string): string {
    this.serverFirst = serverFirst;
    const a = attributes(serverFirst);
    const nonce = a.get("r");
    if (!nonce?.startsWith(this.clientNonce)) throw new ScramError("backend SCRAM nonce mismatch");
    if (a.get("s") !== this.verifier.salt.toString("base64") || Number(a.get("i")) !== this.verifier.iterations) {
      throw new ScramError("the backend role's SCRAM verifier differs from the catalog's (salt or iterations): set the role's password from the catalog verifier");
    }
    const withoutProof = `c=biws,r=${nonce}`;
    this.authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(this.clientKey, hmac(this.verifier.storedKey, this.authMessage));
    return `${withoutProof},p=${proof.toString("base64")}`;
  }

  verifyServerFinal(serverFinal: string): void {
    const v = attributes(serverFinal).get("v");
    const expected = hmac(this.verifier.serverKey, this.authMessage).toString("base64");
    if (v !== expected) throw new ScramError("backend's SCRAM server signature is wrong: not the server the catalog describes");
  }
}
