/**
 * The client side of the connection phase, terminated in the proxy, as a state machine over
 * logical packets (no socket: the session feeds it what PacketScanner assembled and writes what
 * it returns). The proxy greets with `mysql_native_password`; a client that answers for another
 * plugin (`caching_sha2_password`, MySQL 8's default) gets an AuthSwitchRequest back to native.
 * The login names the tenant database (`<database>__<tenant>`, the same name as the database on
 * every server); the reply is checked against the catalog's SHA1(SHA1()) verifier. Refusals are
 * ERR packets with the server's codes; an unknown login and a wrong password read the same (no
 * enumeration of tenants).
 */
import { CAP, ER, type ErrorCode } from "./codes";
import { encodeAuthSwitch, encodeErr, encodeGreeting, parseHandshakeResponse, PROXY_CAPABILITIES, DEFAULT_CHARSET, type HandshakeResponse } from "./handshake";
import { NATIVE_PASSWORD, checkNativeReply, newScramble, parseNativeVerifier } from "./native-password";

/** What the proxy knows of a login: the verifier of the tenant database it names. */
export interface MysqlLogin {
  /** `*<40 hex>`, MariaDB's PASSWORD() form. */
  verifier: string;
  /** The tenant database this login may use (its only database). */
  database: string;
}

export interface ClientAuthOptions {
  serverVersion: string;
  connectionId: number;
  /** The login of `user`, or undefined when there is none. */
  login: (user: string) => MysqlLogin | undefined;
  /** Whether a database of that name exists anywhere in the catalog (1044 versus 1049). */
  databaseExists: (name: string) => boolean;
  /** Offer TLS (a certificate is configured). */
  tls?: boolean;
  /** The client's address, for the error messages (`'user'@'host'`). */
  clientHost: string;
}

export type AuthStep =
  | { kind: "send"; payload: Buffer; seq: number }
  /** The client asked for TLS: upgrade the socket, then feed the next packet. */
  | { kind: "tls" }
  | { kind: "refuse"; payload: Buffer; seq: number; reason: string }
  | { kind: "authenticated"; user: string; database: string; passwordSha1: Buffer; response: HandshakeResponse; seq: number };

export class ClientAuth {
  private readonly scramble = newScramble();
  private state: "greeting" | "response" | "switch" | "done" = "greeting";
  private response: HandshakeResponse | undefined;

  constructor(private readonly o: ClientAuthOptions) {}

  /** The greeting, sequence id 0. */
  greet(): AuthStep {
    this.state = "response";
    const capabilities = this.o.tls ? PROXY_CAPABILITIES | CAP.SSL : PROXY_CAPABILITIES;
    const payload = encodeGreeting({ serverVersion: this.o.serverVersion, connectionId: this.o.connectionId, scramble: this.scramble, capabilities, charset: DEFAULT_CHARSET, status: 0x0002, authPlugin: NATIVE_PASSWORD });
    return { kind: "send", payload, seq: 0 };
  }

  /** The next logical packet from the client, with its sequence id. */
  receive(payload: Buffer, seq: number): AuthStep {
    if (this.state === "response") {
      const r = parseHandshakeResponse(payload);
      if ("sslRequest" in r) {
        if (!this.o.tls) return this.refuse(ER.HANDSHAKE, "Bad handshake: TLS is not configured on this proxy", seq + 1, "TLS asked for, none configured");
        return { kind: "tls" };
      }
      this.response = r;
      if (!(r.capabilities & CAP.PLUGIN_AUTH) || !r.authPlugin || r.authPlugin === NATIVE_PASSWORD) return this.check(r.authResponse, seq + 1);
      // Another plugin: switch the client to native with the same scramble.
      this.state = "switch";
      return { kind: "send", payload: encodeAuthSwitch(NATIVE_PASSWORD, this.scramble), seq: seq + 1 };
    }
    if (this.state === "switch") return this.check(payload, seq + 1);
    throw new Error(`ClientAuth.receive in state ${this.state}`);
  }

  private check(reply: Buffer, seq: number): AuthStep {
    this.state = "done";
    const r = this.response!;
    const denied = () => this.refuse(ER.ACCESS_DENIED, `Access denied for user '${r.user}'@'${this.o.clientHost}' (using password: ${reply.length ? "YES" : "NO"})`, seq, "authentication failed");
    const login = this.o.login(r.user);
    const verifier = login ? parseNativeVerifier(login.verifier) : undefined;
    const passwordSha1 = verifier ? checkNativeReply(this.scramble, reply, verifier) : undefined;
    if (!login || !passwordSha1) return denied();
    const database = r.database ?? login.database;
    if (database !== login.database) {
      if (this.o.databaseExists(database)) return this.refuse(ER.DBACCESS_DENIED, `Access denied for user '${r.user}'@'${this.o.clientHost}' to database '${database}'`, seq, "another tenant's database");
      return this.refuse(ER.BAD_DB, `Unknown database '${database}'`, seq, "unknown database");
    }
    return { kind: "authenticated", user: r.user, database, passwordSha1, response: r, seq };
  }

  private refuse(e: ErrorCode, message: string, seq: number, reason: string): AuthStep {
    this.state = "done";
    return { kind: "refuse", payload: encodeErr(e, message), seq, reason };
  }
}
