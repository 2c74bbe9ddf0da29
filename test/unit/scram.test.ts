/**
 * SCRAM-SHA-256 (proxy/postgres/scram.ts) against references: node-postgres's own client
 * implementation (the reference client), verifiers PostgreSQL itself stored, and RFC 7677's
 * test vector. Then the proxy's client side (ScramClient, proving a role with the ClientKey only)
 * against the server side.
 */
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { decoyVerifier, makeVerifier, MECHANISM, parseVerifier, ScramClient, ScramError, ScramServer, type ScramVerifier } from "../../proxy/postgres/scram";

/** node-postgres's client SCRAM (pg/lib/crypto/sasl.js), untyped upstream. */
interface PgSaslSession {
  mechanism: string;
  clientNonce: string;
  response: string;
  message: string;
}
interface PgSasl {
  startSession(mechanisms: string[], stream?: unknown): PgSaslSession;
  continueSession(session: PgSaslSession, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(session: PgSaslSession, serverData: string): void;
}
const pgSasl = createRequire(__filename)("pg/lib/crypto/sasl") as PgSasl;

const hmac = (key: Buffer, data: string) => createHmac("sha256", key).update(data).digest();
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest();
const saltedPassword = (password: string, v: ScramVerifier) => pbkdf2Sync(password, v.salt, v.iterations, 32, "sha256");

const PASSWORD = "s3cret-Tenant_pw";
// Low iteration counts keep the suite fast; one test uses PostgreSQL's default (4096).
const fastVerifier = (password = PASSWORD) => parseVerifier(makeVerifier(password, { iterations: 64 }));

/** A full exchange between node-postgres (client) and ScramServer; returns what each side ended with. */
async function pgLogin(verifier: ScramVerifier, password: string, stream?: unknown) {
  const server = new ScramServer(verifier);
  const session = pgSasl.startSession([MECHANISM], stream);
  const serverFirst = server.first(session.response);
  await pgSasl.continueSession(session, password, serverFirst, stream);
  const { clientKey, serverFinal } = server.final(session.response);
  pgSasl.finalizeSession(session, serverFinal); // throws unless the server signature is right
  return { clientKey, serverFirst, serverFinal, session };
}

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<Error> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

describe("ScramServer against node-postgres's client", () => {
  it("accepts the right password; the client verifies the server signature; the ClientKey is the password's", async () => {
    const v = fastVerifier();
    const { clientKey, serverFirst, serverFinal, session } = await pgLogin(v, PASSWORD);
    expect(serverFirst).toMatch(new RegExp(`^r=${escape(session.clientNonce)}[A-Za-z0-9+/]{24},s=${escape(v.salt.toString("base64"))},i=64$`));
    expect(serverFinal).toMatch(/^v=[A-Za-z0-9+/]{43}=$/);
    expect(clientKey.equals(hmac(saltedPassword(PASSWORD, v), "Client Key"))).toBe(true);
    expect(sha256(clientKey).equals(v.storedKey)).toBe(true);
  });

  it("works at PostgreSQL's default of 4096 iterations", async () => {
    const v = parseVerifier(makeVerifier(PASSWORD));
    expect(v.iterations).toBe(4096);
    const { serverFirst } = await pgLogin(v, PASSWORD);
    expect(serverFirst).toMatch(/,i=4096$/);
  });

  it("accepts a client that could bind channels but was not offered it (gs2 header 'y,,')", async () => {
    // pg sends "y,," when it has a TLS stream but the server offers only SCRAM-SHA-256.
    const { session, clientKey } = await pgLogin(fastVerifier(), PASSWORD, {});
    expect(session.mechanism).toBe(MECHANISM);
    expect(session.response).toMatch(/^c=eSws,/); // base64("y,,")
    expect(clientKey).toHaveLength(32);
  });

  it("rejects a wrong password with ScramError", async () => {
    const err = await rejection(pgLogin(fastVerifier(), "not-the-password"));
    expect(err).toBeInstanceOf(ScramError);
    expect(err.message).toBe("password authentication failed");
  });

  it("uses a fresh server nonce per exchange", async () => {
    const v = fastVerifier();
    const a = (await pgLogin(v, PASSWORD)).serverFirst.split(",")[0]!;
    const b = (await pgLogin(v, PASSWORD)).serverFirst.split(",")[0]!;
    expect(a).not.toBe(b);
  });

  it("rejects a client-final whose nonce is not the server's (tampered or replayed)", async () => {
    const v = fastVerifier();
    const server = new ScramServer(v);
    const session = pgSasl.startSession([MECHANISM]);
    const serverFirst = server.first(session.response);
    await pgSasl.continueSession(session, PASSWORD, serverFirst);
    const tampered = session.response.replace(/,r=([^,]*)/, (_m, r: string) => `,r=${r.slice(0, -2)}AA`);
    expect(tampered).not.toBe(session.response);
    expect(() => server.final(tampered)).toThrow(new ScramError("SCRAM nonce mismatch"));
    // A proof from an earlier, successful exchange replayed against a new one.
    const replay = new ScramServer(v);
    replay.first(pgSasl.startSession([MECHANISM]).response);
    expect(() => replay.final(session.response)).toThrow(/nonce mismatch/);
    // The untampered message still works on the original exchange.
    expect(sha256(server.final(session.response).clientKey).equals(v.storedKey)).toBe(true);
  });

  it("rejects a channel-binding request (gs2 'p=') and a client-final whose c= does not match the gs2 header", async () => {
    const server = new ScramServer(fastVerifier());
    expect(() => server.first("p=tls-server-end-point,,n=*,r=abcdefgh")).toThrow(new ScramError("channel binding is not supported"));

    const v = fastVerifier();
    const s2 = new ScramServer(v);
    const session = pgSasl.startSession([MECHANISM]); // "n,,"
    const serverFirst = s2.first(session.response);
    await pgSasl.continueSession(session, PASSWORD, serverFirst, {}); // computes c=eSws ("y,,")
    expect(() => s2.final(session.response)).toThrow(new ScramError("SCRAM channel binding mismatch"));
  });

  it("rejects malformed client-first messages and a short proof", () => {
    const server = new ScramServer(fastVerifier());
    expect(() => server.first("x,,n=*,r=abc")).toThrow(new ScramError("malformed SCRAM client-first-message"));
    expect(() => server.first("n,,n=*")).toThrow(new ScramError("SCRAM client-first-message has no nonce"));
    const first = server.first("n,,n=*,r=abcdefgh");
    const nonce = first.split(",")[0]!.slice(2);
    expect(() => server.final(`c=biws,r=${nonce},p=${Buffer.alloc(16).toString("base64")}`)).toThrow(/proof has the wrong length/);
  });
});

describe("makeVerifier / parseVerifier: PostgreSQL's stored format", () => {
  // Stored by PostgreSQL 15.18 itself: `SET password_encryption = 'scram-sha-256'; CREATE ROLE ...
  // PASSWORD '<password>'; SELECT rolpassword FROM pg_authid` on a throwaway cluster.
  const POSTGRES_STORED = [
    ["correct horse battery staple", "SCRAM-SHA-256$4096:k05llU9/yhggs08Jr+EUxA==$C9x8/3Xr3zda0pyHgVhuUJnVG3Gzl/MsqFYtd03JZLo=:kdG/oT0zi1d+uIeDGPSJSsOgpJA6Xvpyb+79SmATNDU="],
    ["tenantfleet-Secret_42!", "SCRAM-SHA-256$4096:cCN1q8UM1gHy8tr9nx/trA==$N40bQuFQ6kQqTCUb3xozBvH0C6j6NPq7ZHle6G5cwo4=:ayBVUlSWwfgrpsRLt7lq0dQKMxbP3UrBTw9uS5X+9eI="],
  ] as const;

  it.each(POSTGRES_STORED)("reproduces PostgreSQL's verifier for %j from its salt", (password, stored) => {
    const { salt, iterations } = parseVerifier(stored);
    expect(makeVerifier(password, { salt, iterations })).toBe(stored);
  });

  it("a PostgreSQL-stored verifier authenticates node-postgres with that password, and only that one", async () => {
    const [password, stored] = POSTGRES_STORED[0];
    await expect(pgLogin(parseVerifier(stored), password)).resolves.toMatchObject({ serverFinal: expect.stringMatching(/^v=/) });
    await expect(pgLogin(parseVerifier(stored), POSTGRES_STORED[1][0])).rejects.toThrow(ScramError);
  });

  it("matches RFC 7677's SCRAM-SHA-256 test vector (user/pencil)", () => {
    const v = parseVerifier(makeVerifier("pencil", { salt: Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), iterations: 4096 }));
    const authMessage =
      "n=user,r=rOprNGfwEbeRWgbNEkqO," +
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const proof = Buffer.from("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "base64");
    const signature = hmac(v.storedKey, authMessage);
    const clientKey = Buffer.from(proof.map((b, i) => b ^ signature[i]!));
    expect(sha256(clientKey).equals(v.storedKey)).toBe(true);
    expect(hmac(v.serverKey, authMessage).toString("base64")).toBe("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  });

  it("round-trips through parseVerifier: StoredKey = SHA256(HMAC(SaltedPassword, 'Client Key')), ServerKey = HMAC(SaltedPassword, 'Server Key')", () => {
    const salt = Buffer.from("0123456789abcdef");
    const text = makeVerifier(PASSWORD, { salt, iterations: 4096 });
    const v = parseVerifier(text);
    expect(v.iterations).toBe(4096);
    expect(v.salt.equals(salt)).toBe(true);
    const salted = pbkdf2Sync(PASSWORD, salt, 4096, 32, "sha256");
    expect(v.storedKey.equals(sha256(hmac(salted, "Client Key")))).toBe(true);
    expect(v.serverKey.equals(hmac(salted, "Server Key"))).toBe(true);
    expect(text).toBe(`SCRAM-SHA-256$4096:${salt.toString("base64")}$${v.storedKey.toString("base64")}:${v.serverKey.toString("base64")}`);
  });

  it("defaults to a random 16-byte salt and 4096 iterations", () => {
    const a = parseVerifier(makeVerifier(PASSWORD));
    const b = parseVerifier(makeVerifier(PASSWORD));
    expect(a.salt).toHaveLength(16);
    expect(a.iterations).toBe(4096);
    expect(a.salt.equals(b.salt)).toBe(false);
    expect(a.storedKey.equals(b.storedKey)).toBe(false);
  });

  it("parseVerifier rejects md5 hashes, plaintext and keys of the wrong size", () => {
    expect(() => parseVerifier("md5" + "0".repeat(32))).toThrow(/not a SCRAM-SHA-256 verifier/);
    expect(() => parseVerifier(PASSWORD)).toThrow(/not a SCRAM-SHA-256 verifier/);
    const short = Buffer.alloc(16).toString("base64");
    expect(() => parseVerifier(`SCRAM-SHA-256$4096:c2FsdA==$${short}:${short}`)).toThrow("SCRAM verifier keys must be 32 bytes");
  });
});

describe("ScramClient (proxy → backend) with the ClientKey recovered from the client's login", () => {
  /** The client logs into the proxy with its password; the proxy keeps only the ClientKey. */
  async function recoveredClientKey(v: ScramVerifier) {
    return (await pgLogin(v, PASSWORD)).clientKey;
  }

  /** The proxy logs into a backend that holds `backendVerifier`. */
  function backendLogin(clientKey: Buffer, catalogVerifier: ScramVerifier, backendVerifier: ScramVerifier, tamper = (s: string) => s) {
    const client = new ScramClient(clientKey, catalogVerifier);
    const backend = new ScramServer(backendVerifier);
    const serverFirst = backend.first(client.first());
    const clientFinal = client.final(serverFirst);
    const { clientKey: seenByBackend, serverFinal } = backend.final(clientFinal);
    client.verifyServerFinal(tamper(serverFinal));
    return { seenByBackend, clientFinal };
  }

  it("logs into a backend with the same verifier without ever knowing the password", async () => {
    const v = fastVerifier();
    const key = await recoveredClientKey(v);
    const { seenByBackend, clientFinal } = backendLogin(key, v, v);
    expect(seenByBackend.equals(key)).toBe(true); // the backend accepted the proof
    expect(clientFinal).toMatch(/^c=biws,r=[^,]+,p=[A-Za-z0-9+/]{43}=$/);
  });

  it("a backend whose verifier has another salt makes ScramClient.final throw, naming the verifier", async () => {
    const v = fastVerifier();
    const key = await recoveredClientKey(v);
    const otherSalt = parseVerifier(makeVerifier(PASSWORD, { iterations: 64 })); // same password, new salt
    const err = await rejection(() => backendLogin(key, v, otherSalt));
    expect(err).toBeInstanceOf(ScramError);
    expect(err.message).toMatch(/verifier/);
    const otherIterations = parseVerifier(makeVerifier(PASSWORD, { salt: v.salt, iterations: 65 }));
    expect(() => backendLogin(key, v, otherIterations)).toThrow(/SCRAM verifier differs/);
  });

  it("rejects a tampered or error server-final (a backend that does not know the ServerKey)", async () => {
    const v = fastVerifier();
    const key = await recoveredClientKey(v);
    const flip = (s: string) => s.slice(0, 2) + (s[2] === "A" ? "B" : "A") + s.slice(3);
    expect(() => backendLogin(key, v, v, flip)).toThrow(new ScramError("backend's SCRAM server signature is wrong: not the server the catalog describes"));
    expect(() => backendLogin(key, v, v, () => "e=invalid-proof")).toThrow(ScramError);
    // An impostor with the right salt and StoredKey but not the ServerKey.
    const impostor: ScramVerifier = { ...v, serverKey: Buffer.alloc(32, 1) };
    expect(() => backendLogin(key, v, impostor)).toThrow(/server signature is wrong/);
  });

  it("rejects a server-first whose nonce does not extend its own", () => {
    const v = fastVerifier();
    const client = new ScramClient(Buffer.alloc(32), v);
    client.first();
    expect(() => client.final(`r=someoneElsesNonce,s=${v.salt.toString("base64")},i=${v.iterations}`)).toThrow(new ScramError("backend SCRAM nonce mismatch"));
  });

  it("a ClientKey from the wrong password is refused by the backend", async () => {
    const v = fastVerifier();
    const wrongKey = hmac(saltedPassword("wrong", v), "Client Key");
    expect(() => backendLogin(wrongKey, v, v)).toThrow(new ScramError("password authentication failed"));
  });
});

describe("decoyVerifier", () => {
  it("always fails, whatever the password, and looks like a real verifier on the wire", async () => {
    for (const password of [PASSWORD, "anything", "correct horse battery staple"]) {
      const err = await rejection(pgLogin(decoyVerifier(), password));
      expect(err).toBeInstanceOf(ScramError);
      expect(err.message).toBe("password authentication failed");
    }
    const real = parseVerifier(makeVerifier(PASSWORD));
    const decoy = decoyVerifier();
    expect(decoy.iterations).toBe(real.iterations);
    expect(decoy.salt.toString("base64")).toHaveLength(real.salt.toString("base64").length);
    expect(decoy.salt.equals(decoyVerifier().salt)).toBe(false);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
