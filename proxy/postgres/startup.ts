/**
 * The untyped packets a connection opens with (spec §55.2.1 "Start-up", §55.2.9 "SSL Session
 * Encryption", §55.2.10 "GSSAPI Session Encryption", §55.2.8 "Canceling Requests in Progress").
 */
import { STARTUP } from "./codes";
import { ProtocolError } from "./frame-reader";

export type StartupPacket =
  | { kind: "ssl" }
  | { kind: "gssenc" }
  | { kind: "cancel"; pid: number; secret: number }
  | { kind: "startup"; minor: number; params: Record<string, string> }
  | { kind: "unsupported"; major: number; minor: number };

export function parseStartupPacket(body: Buffer): StartupPacket {
  const code = body.readInt32BE(0);
  if (code === STARTUP.SSL_REQUEST) return { kind: "ssl" };
  if (code === STARTUP.GSSENC_REQUEST) return { kind: "gssenc" };
  if (code === STARTUP.CANCEL_REQUEST) {
    if (body.length < 12) throw new ProtocolError("short CancelRequest");
    return { kind: "cancel", pid: body.readInt32BE(4), secret: body.readInt32BE(8) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) return { kind: "unsupported", major, minor };
  const params: Record<string, string> = {};
  let i = 4;
  while (i < body.length && body[i] !== 0) {
    const k = readCString(body, i);
    const v = readCString(body, k.next);
    params[k.value] = v.value;
    i = v.next;
  }
  return { kind: "startup", minor, params };
}

export function readCString(buf: Buffer, at: number): { value: string; next: number } {
  const end = buf.indexOf(0, at);
  if (end < 0) throw new ProtocolError("unterminated string in message");
  return { value: buf.toString("utf8", at, end), next: end + 1 };
}

/** ErrorResponse / NoticeResponse fields keyed by their one-letter code (§55.8). */
export function parseErrorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const s = readCString(body, i + 1);
    out[code] = s.value;
    i = s.next;
  }
  return out;
}

export function parseParameterStatus(body: Buffer): { name: string; value: string } {
  const n = readCString(body, 0);
  const v = readCString(body, n.next);
  return { name: n.value, value: v.value };
}

/** The statement name a Parse ('P') message defines, or a Close ('C') of kind 'S' drops. */
export function parseStatementName(body: Buffer): string {
  return readCString(body, 0).value;
}

export function parseClose(body: Buffer): { kind: "S" | "P"; name: string } {
  const kind = body[0] === 0x53 ? "S" : "P";
  return { kind, name: readCString(body, 1).value };
}
