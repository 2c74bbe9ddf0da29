/**
 * The connection phase of the MySQL protocol, both ways: the proxy greets clients (Initial
 * Handshake v10), reads their HandshakeResponse41 / SSLRequest, switches them to
 * `mysql_native_password` when they start with another plugin (AuthSwitchRequest), and answers
 * with OK or ERR; towards a server it reads the greeting and writes the response. Generic OK,
 * ERR and EOF packets live here too: they are shared by every phase.
 */
import { CAP, RESPONSE, STATUS, UTF8MB4_GENERAL_CI, type ErrorCode } from "./codes";
import { MysqlProtocolError, PayloadReader, PayloadWriter } from "./packets";

export interface Greeting {
  protocol: number;
  serverVersion: string;
  connectionId: number;
  /** The 20-byte scramble (both parts joined, without the trailing NUL). */
  scramble: Buffer;
  capabilities: number;
  charset: number;
  status: number;
  authPlugin: string;
}

export function encodeGreeting(g: Omit<Greeting, "protocol">): Buffer {
  if (g.scramble.length !== 20) throw new Error("a greeting's scramble is 20 bytes");
  return new PayloadWriter()
    .u8(10)
    .cstring(g.serverVersion)
    .u32(g.connectionId)
    .bytes(g.scramble.subarray(0, 8))
    .u8(0)
    .u16(g.capabilities & 0xffff)
    .u8(g.charset)
    .u16(g.status)
    .u16((g.capabilities >>> 16) & 0xffff)
    .u8(21)
    .zeros(10) // reserved (6 bytes), MariaDB's extended capabilities (4, none offered)
    .bytes(g.scramble.subarray(8))
    .u8(0)
    .cstring(g.authPlugin)
    .build();
}

export function parseGreeting(payload: Buffer): Greeting {
  const r = new PayloadReader(payload);
  const protocol = r.u8();
  if (protocol === RESPONSE.ERR) throw new MysqlProtocolError(`the server refused the connection: ${parseErr(payload).message}`);
  if (protocol !== 10) throw new MysqlProtocolError(`unsupported handshake protocol ${protocol}`);
  const serverVersion = r.cstring();
  const connectionId = r.u32();
  const part1 = r.bytes(8);
  r.u8();
  let capabilities = r.u16();
  const charset = r.u8();
  const status = r.u16();
  capabilities = (capabilities | (r.u16() << 16)) >>> 0;
  const dataLen = r.u8();
  r.bytes(10);
  const part2Len = Math.max(13, dataLen - 8);
  const part2 = r.bytes(Math.min(part2Len, r.left));
  const scramble = Buffer.concat([part1, part2.subarray(0, part2[part2.length - 1] === 0 ? part2.length - 1 : part2.length)]);
  const authPlugin = capabilities & CAP.PLUGIN_AUTH && r.left > 0 ? r.cstring() : "mysql_native_password";
  return { protocol, serverVersion, connectionId, scramble, capabilities, charset, status, authPlugin };
}

export interface HandshakeResponse {
  capabilities: number;
  maxPacketSize: number;
  charset: number;
  user: string;
  authResponse: Buffer;
  database?: string;
  authPlugin?: string;
  attributes: Record<string, string>;
}

/** A client's first packet: an SSLRequest (32 bytes, no user) or a HandshakeResponse41. */
export function parseHandshakeResponse(payload: Buffer): HandshakeResponse | { sslRequest: true; capabilities: number; charset: number } {
  const r = new PayloadReader(payload);
  const capabilities = r.u32();
  if (!(capabilities & CAP.PROTOCOL_41)) throw new MysqlProtocolError("the client does not speak protocol 4.1 (HandshakeResponse320 is not supported)");
  const maxPacketSize = r.u32();
  const charset = r.u8();
  r.bytes(23);
  if (r.left === 0) {
    if (!(capabilities & CAP.SSL)) throw new MysqlProtocolError("a handshake response without a user name");
    return { sslRequest: true, capabilities, charset };
  }
  const user = r.cstring();
  let authResponse: Buffer;
  if (capabilities & CAP.PLUGIN_AUTH_LENENC_CLIENT_DATA) authResponse = Buffer.from(r.lenencBytes());
  else if (capabilities & CAP.SECURE_CONNECTION) authResponse = Buffer.from(r.bytes(r.u8()));
  else authResponse = Buffer.from(r.cstring(), "latin1");
  const database = capabilities & CAP.CONNECT_WITH_DB && r.left > 0 ? r.cstring() : undefined;
  const authPlugin = capabilities & CAP.PLUGIN_AUTH && r.left > 0 ? r.cstring() : undefined;
  const attributes: Record<string, string> = {};
  if (capabilities & CAP.CONNECT_ATTRS && r.left > 0) {
    const attrs = new PayloadReader(r.lenencBytes());
    while (attrs.left > 0) attributes[attrs.lenencString()] = attrs.lenencString();
  }
  return { capabilities, maxPacketSize, charset, user, authResponse, database: database || undefined, authPlugin, attributes };
}

/** The proxy's own HandshakeResponse41 to a server. */
export function encodeHandshakeResponse(h: Omit<HandshakeResponse, "attributes"> & { attributes?: Record<string, string> }): Buffer {
  const w = new PayloadWriter().u32(h.capabilities).u32(h.maxPacketSize).u8(h.charset).zeros(23).cstring(h.user);
  if (h.capabilities & CAP.PLUGIN_AUTH_LENENC_CLIENT_DATA) w.lenencBytes(h.authResponse);
  else w.u8(h.authResponse.length).bytes(h.authResponse);
  if (h.capabilities & CAP.CONNECT_WITH_DB) w.cstring(h.database ?? "");
  if (h.capabilities & CAP.PLUGIN_AUTH) w.cstring(h.authPlugin ?? "mysql_native_password");
  if (h.capabilities & CAP.CONNECT_ATTRS) {
    const a = new PayloadWriter();
    for (const [k, v] of Object.entries(h.attributes ?? {})) a.lenencString(k).lenencString(v);
    w.lenencBytes(a.build());
  }
  return w.build();
}

/** AuthSwitchRequest: 0xFE, the plugin, its data (a scramble, NUL-terminated as servers send it). */
export function encodeAuthSwitch(plugin: string, scramble: Buffer): Buffer {
  return new PayloadWriter().u8(RESPONSE.EOF).cstring(plugin).bytes(scramble).u8(0).build();
}

export function parseAuthSwitch(payload: Buffer): { plugin: string; data: Buffer } {
  const r = new PayloadReader(payload, 1);
  const plugin = r.cstring();
  const rest = r.rest();
  return { plugin, data: rest[rest.length - 1] === 0 ? rest.subarray(0, rest.length - 1) : rest };
}

export interface OkPacket {
  affectedRows: number;
  lastInsertId: number;
  status: number;
  warnings: number;
  info: string;
  /** Session state changes (CLIENT_SESSION_TRACK and SERVER_SESSION_STATE_CHANGED): raw entries. */
  sessionState: Array<{ type: number; data: Buffer }>;
}

export function encodeOk(o: Partial<OkPacket> & { status: number }, header: number = RESPONSE.OK): Buffer {
  return new PayloadWriter()
    .u8(header)
    .lenenc(o.affectedRows ?? 0)
    .lenenc(o.lastInsertId ?? 0)
    .u16(o.status)
    .u16(o.warnings ?? 0)
    .bytes(Buffer.from(o.info ?? "", "utf8"))
    .build();
}

/** An OK packet (or an EOF-style OK, header 0xFE, under CLIENT_DEPRECATE_EOF). */
export function parseOk(payload: Buffer, capabilities: number): OkPacket {
  const r = new PayloadReader(payload, 1);
  const affectedRows = r.lenenc();
  const lastInsertId = r.lenenc();
  const status = r.u16();
  const warnings = r.u16();
  let info = "";
  const sessionState: OkPacket["sessionState"] = [];
  if (r.left > 0) {
    if (capabilities & CAP.SESSION_TRACK) {
      info = r.lenencString();
      if (status & STATUS.SESSION_STATE_CHANGED && r.left > 0) {
        const s = new PayloadReader(r.lenencBytes());
        while (s.left > 0) {
          const type = s.u8();
          sessionState.push({ type, data: Buffer.from(s.lenencBytes()) });
        }
      }
    } else {
      info = r.rest().toString("utf8");
    }
  }
  return { affectedRows, lastInsertId, status, warnings, info, sessionState };
}

export interface ErrPacket {
  code: number;
  sqlState: string;
  message: string;
}

export function encodeErr(e: ErrorCode, message: string): Buffer {
  return encodeErrPacket(errPacket(e, message));
}

/** An ERR packet's payload: one the proxy made, or one a server (or a peer proxy) sent. */
export function encodeErrPacket(e: ErrPacket): Buffer {
  return new PayloadWriter().u8(RESPONSE.ERR).u16(e.code).bytes(Buffer.from(`#${e.sqlState}`, "latin1")).bytes(Buffer.from(e.message, "utf8")).build();
}

export function errPacket(e: ErrorCode, message: string): ErrPacket {
  return { code: e.code, sqlState: e.state, message };
}

export function parseErr(payload: Buffer): ErrPacket {
  const r = new PayloadReader(payload, 1);
  const code = r.u16();
  // 0xFFFF is MariaDB's progress report, not an error; callers skip those before this.
  let sqlState = "HY000";
  if (r.left > 0 && payload[r.pos] === 0x23) {
    r.u8();
    sqlState = r.bytes(5).toString("latin1");
  }
  return { code, sqlState, message: r.rest().toString("utf8") };
}

/** An EOF packet (protocol 4.1): 0xFE, warnings, status; shorter than 9 bytes. */
export function parseEof(payload: Buffer): { warnings: number; status: number } {
  const r = new PayloadReader(payload, 1);
  return { warnings: r.u16(), status: r.u16() };
}

export function isEof(payload: Buffer): boolean {
  return payload[0] === RESPONSE.EOF && payload.length < 9;
}

/** The capabilities the proxy offers clients: what it can carry for them to any server. */
export const PROXY_CAPABILITIES =
  CAP.LONG_PASSWORD |
  CAP.FOUND_ROWS |
  CAP.LONG_FLAG |
  CAP.CONNECT_WITH_DB |
  CAP.LOCAL_FILES |
  CAP.IGNORE_SPACE |
  CAP.PROTOCOL_41 |
  CAP.INTERACTIVE |
  CAP.IGNORE_SIGPIPE |
  CAP.TRANSACTIONS |
  CAP.RESERVED |
  CAP.SECURE_CONNECTION |
  CAP.MULTI_STATEMENTS |
  CAP.MULTI_RESULTS |
  CAP.PS_MULTI_RESULTS |
  CAP.PLUGIN_AUTH |
  CAP.CONNECT_ATTRS |
  CAP.PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CAP.SESSION_TRACK |
  CAP.DEPRECATE_EOF;

export const DEFAULT_CHARSET = UTF8MB4_GENERAL_CI;
