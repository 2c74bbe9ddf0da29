/**
 * Building protocol messages (spec §55.7 "Message Formats"). Only what the proxy itself says:
 * everything else it forwards as received.
 */
import { AUTH, BE, FE, STARTUP } from "./codes";

/** One typed message: type byte, Int32 length, body. */
export function message(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

export function cstring(s: string): Buffer {
  return Buffer.from(s + "\0", "utf8");
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

export interface ErrorFields {
  severity: "ERROR" | "FATAL";
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** ErrorResponse / NoticeResponse body: (code byte, cstring)* then a zero byte. */
function fields(f: ErrorFields): Buffer {
  const parts: Buffer[] = [];
  const add = (code: string, value: string | undefined) => {
    if (value !== undefined) parts.push(Buffer.from(code, "ascii"), cstring(value));
  };
  add("S", f.severity);
  add("V", f.severity);
  add("C", f.code);
  add("M", f.message);
  add("D", f.detail);
  add("H", f.hint);
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export const errorResponse = (f: ErrorFields) => message(BE.ErrorResponse, fields(f));

export const authenticationOk = () => message(BE.Authentication, int32(AUTH.Ok));

export const authenticationSASL = (mechanisms: string[]) =>
  message(BE.Authentication, Buffer.concat([int32(AUTH.SASL), ...mechanisms.map(cstring), Buffer.from([0])]));

export const authenticationSASLContinue = (data: string) =>
  message(BE.Authentication, Buffer.concat([int32(AUTH.SASLContinue), Buffer.from(data, "utf8")]));

export const authenticationSASLFinal = (data: string) =>
  message(BE.Authentication, Buffer.concat([int32(AUTH.SASLFinal), Buffer.from(data, "utf8")]));

export const parameterStatus = (name: string, value: string) =>
  message(BE.ParameterStatus, Buffer.concat([cstring(name), cstring(value)]));

export const backendKeyData = (pid: number, secret: number) => message(BE.BackendKeyData, Buffer.concat([int32(pid), int32(secret)]));

export const readyForQuery = (status: number) => message(BE.ReadyForQuery, Buffer.from([status]));

/** Frontend messages the proxy sends to a backend as a client. */
export function startupMessage(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    int32(STARTUP.PROTOCOL_3_0),
    ...Object.entries(params).flatMap(([k, v]) => [cstring(k), cstring(v)]),
    Buffer.from([0]),
  ]);
  return Buffer.concat([int32(body.length + 4), body]);
}

export function cancelRequest(pid: number, secret: number): Buffer {
  const b = Buffer.allocUnsafe(16);
  b.writeInt32BE(16, 0);
  b.writeInt32BE(STARTUP.CANCEL_REQUEST, 4);
  b.writeInt32BE(pid, 8);
  b.writeInt32BE(secret, 12);
  return b;
}

export const saslInitialResponse = (mechanism: string, data: string) => {
  const d = Buffer.from(data, "utf8");
  return message(FE.Password, Buffer.concat([cstring(mechanism), int32(d.length), d]));
};

export const saslResponse = (data: string) => message(FE.Password, Buffer.from(data, "utf8"));

export const query = (sql: string) => message(FE.Query, cstring(sql));

export const sync = () => message(FE.Sync, Buffer.alloc(0));

export const terminate = () => message(FE.Terminate, Buffer.alloc(0));

/** NegotiateProtocolVersion: the newest minor version we speak and the `_pq_.` options we do not know. */
export const negotiateProtocolVersion = (newestMinor: number, unknownOptions: string[]) =>
  message(BE.NegotiateProtocolVersion, Buffer.concat([int32(newestMinor), int32(unknownOptions.length), ...unknownOptions.map(cstring)]));
