/**
 * The proxy's login to a MySQL/MariaDB server as the tenant's user, with what the client's
 * `mysql_native_password` exchange proved (`SHA1(password)`, recovered from its reply; no stored
 * plaintext). The capabilities sent are the client's, as negotiated with the proxy, so the
 * server's responses are in exactly the form the client expects and the proxy can forward them
 * byte for byte. TLS and compression end at the proxy: they are never asked of the server.
 */
import * as net from "node:net";
import { CAP, RESPONSE } from "./codes";
import { encodeHandshakeResponse, parseAuthSwitch, parseErr, parseGreeting, parseOk, PROXY_CAPABILITIES, type ErrPacket, type Greeting } from "./handshake";
import { NATIVE_PASSWORD, nativeReply } from "./native-password";
import { encodePacket, LogicalPacket, MysqlProtocolError, PacketScanner } from "./packets";

/** Capabilities that describe the client's link to the proxy, not the proxy's link to the server. */
export const NEVER_TO_SERVER = CAP.SSL | CAP.COMPRESS;

/** What the login needs on the proxy's side of the connection. */
export const LOGIN_CAPABILITIES = CAP.PROTOCOL_41 | CAP.SECURE_CONNECTION | CAP.PLUGIN_AUTH | CAP.CONNECT_WITH_DB;

export interface MysqlTarget {
  host: string;
  port: number;
  user: string;
  database: string;
}

export interface MysqlLoginProof {
  /** `SHA1(password)`, as the client's reply proved it. */
  passwordSha1: Buffer;
  /** The capabilities the client and the proxy agreed on. */
  clientCapabilities: number;
  charset: number;
  /** Connection attributes passed on (the client's `_client_name` and the like, plus the proxy's). */
  attributes?: Record<string, string>;
  connectTimeoutMs: number;
}

export interface MysqlBackend {
  socket: net.Socket;
  greeting: Greeting;
  /** The capabilities of this connection: the client's, less TLS and compression. */
  capabilities: number;
  /** Status flags of the login's OK. */
  status: number;
  connectionId: number;
}

/** The server refused (or broke) the login; `err` is its ERR packet when it sent one. */
export class MysqlBackendError extends Error {
  override name = "MysqlBackendError";
  constructor(
    message: string,
    readonly err?: ErrPacket,
  ) {
    super(message);
  }
}

/**
 * Connect and log in. Resolves once the server's OK has arrived, with the socket paused and
 * nothing of it read past that OK (a server says nothing until it is sent a command).
 */
export function connectMysqlBackend(target: MysqlTarget, login: MysqlLoginProof): Promise<MysqlBackend> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new MysqlBackendError(`no login to ${target.host}:${target.port} within ${login.connectTimeoutMs} ms`)), login.connectTimeoutMs);
    timer.unref();
    socket.on("error", (e) => fail(new MysqlBackendError(`${target.host}:${target.port}: ${e.message}`)));
    socket.on("close", () => fail(new MysqlBackendError(`${target.host}:${target.port} closed the connection during the login`)));

    let greeting: Greeting | undefined;
    let capabilities = 0;
    const logical = new LogicalPacket();
    const send = (seq: number, payload: Buffer) => socket.write(encodePacket(seq, payload).bytes);

    const onPacket = (payload: Buffer, seq: number) => {
      if (!greeting) {
        greeting = parseGreeting(payload);
        // CLIENT_LONG_PASSWORD is what MariaDB clears to say it is MariaDB; it changes nothing on the wire.
        const missing = PROXY_CAPABILITIES & ~greeting.capabilities & login.clientCapabilities & ~CAP.LONG_PASSWORD;
        if (missing) throw new MysqlBackendError(`${target.host}:${target.port} lacks capabilities the client uses (0x${missing.toString(16)})`);
        capabilities = ((login.clientCapabilities & ~NEVER_TO_SERVER) | LOGIN_CAPABILITIES | (greeting.capabilities & CAP.PLUGIN_AUTH_LENENC_CLIENT_DATA)) >>> 0;
        if (login.attributes && greeting.capabilities & CAP.CONNECT_ATTRS) capabilities |= CAP.CONNECT_ATTRS;
        else capabilities &= ~CAP.CONNECT_ATTRS;
        const authResponse = greeting.authPlugin === NATIVE_PASSWORD ? nativeReply(greeting.scramble, login.passwordSha1) : Buffer.alloc(0);
        send(seq + 1, encodeHandshakeResponse({ capabilities, maxPacketSize: 0x40000000, charset: login.charset, user: target.user, authResponse, database: target.database, authPlugin: NATIVE_PASSWORD, attributes: login.attributes }));
        return;
      }
      switch (payload[0]) {
        case RESPONSE.OK: {
          settled = true;
          clearTimeout(timer);
          socket.removeAllListeners("data");
          socket.removeAllListeners("close");
          socket.removeAllListeners("error");
          socket.pause();
          const ok = parseOk(payload, capabilities);
          resolve({ socket, greeting, capabilities, status: ok.status, connectionId: greeting.connectionId });
          return;
        }
        case RESPONSE.ERR: {
          const err = parseErr(payload);
          throw new MysqlBackendError(`${target.host}:${target.port} refused the login of '${target.user}': ${err.message}`, err);
        }
        case RESPONSE.EOF: {
          const sw = parseAuthSwitch(payload);
          if (sw.plugin !== NATIVE_PASSWORD) throw new MysqlBackendError(`${target.host}:${target.port} asks for ${sw.plugin} for '${target.user}'; the proxy logs in with ${NATIVE_PASSWORD} only (create the user IDENTIFIED WITH ${NATIVE_PASSWORD})`);
          send(seq + 1, nativeReply(sw.data, login.passwordSha1));
          return;
        }
        default:
          throw new MysqlBackendError(`${target.host}:${target.port} sent an unexpected packet (0x${payload[0]?.toString(16)}) during the login of '${target.user}'`);
      }
    };
    const scanner = new PacketScanner((p) => {
      const whole = logical.add(p);
      if (whole) onPacket(whole, p.seq);
    });
    socket.on("data", (chunk: Buffer) => {
      if (settled) return;
      try {
        scanner.feed(chunk);
      } catch (e) {
        fail(e instanceof MysqlBackendError || e instanceof MysqlProtocolError ? e : new MysqlBackendError((e as Error).message));
      }
    });
  });
}
