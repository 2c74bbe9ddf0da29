/**
 * Framing of the PostgreSQL protocol (proxy/postgres/frame-reader.ts, startup.ts): messages split
 * at the front, middle and end of TCP chunks, several messages per chunk, skipped types, views vs
 * copies, and the limits a hostile client could probe.
 */
import { describe, expect, it } from "vitest";
import { BE, FE, MAX_MESSAGE_BYTES, SQLSTATE, STARTUP } from "../../proxy/postgres/codes";
import { ALL_TYPES, FrameScanner, ProtocolError, StartupReader, typeSet } from "../../proxy/postgres/frame-reader";
import { parseErrorFields, parseStartupPacket, parseStatementName } from "../../proxy/postgres/startup";
import * as w from "../../proxy/postgres/writer";

// ------------------------------------------------------------------ building a stream

const int16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
/** A bare header: type byte and a (possibly invalid) length. */
const header = (type: number, len: number) => Buffer.concat([Buffer.from([type]), int32(len)]);

interface Msg {
  type: number;
  body: Buffer;
}

const COPY_BYTES = 200 * 1024;
/** Patterned so that a misplaced or reordered byte shows up. */
const copyPayload = Buffer.alloc(COPY_BYTES);
for (let i = 0; i < COPY_BYTES; i++) copyPayload[i] = (i * 31 + (i >> 8)) % 251;

/** A client's extended-protocol round trip, a COPY and the server's ReadyForQuery, in one stream. */
const MESSAGES: Msg[] = [
  { type: FE.Query, body: w.cstring("select 1") },
  { type: FE.Parse, body: Buffer.concat([w.cstring("stmt_1"), w.cstring("select $1::int"), int16(1), int32(23)]) },
  { type: FE.Bind, body: Buffer.concat([w.cstring(""), w.cstring("stmt_1"), int16(0), int16(1), int32(2), Buffer.from("42"), int16(0)]) },
  { type: FE.Execute, body: Buffer.concat([w.cstring(""), int32(0)]) },
  { type: FE.Sync, body: Buffer.alloc(0) },
  { type: FE.CopyData, body: copyPayload },
  { type: FE.CopyDone, body: Buffer.alloc(0) },
  { type: BE.ReadyForQuery, body: Buffer.from("I") },
];

/** Not pooled (Buffer.alloc), so `buffer` identity means "a view of this chunk". */
const STREAM = (() => {
  const s = Buffer.concat(MESSAGES.map((m) => w.message(m.type, m.body)));
  const out = Buffer.alloc(s.length);
  s.copy(out);
  return out;
})();

/** Offset of each message's first byte, and of its body. */
const STARTS: number[] = [];
const BODY_AT: number[] = [];
{
  let at = 0;
  for (const m of MESSAGES) {
    STARTS.push(at);
    BODY_AT.push(at + 5);
    at += 5 + m.body.length;
  }
  if (at !== STREAM.length) throw new Error("test stream offsets are wrong");
}
/** Offsets at which every byte before belongs to a complete message. */
const BOUNDARIES = new Set([...STARTS, STREAM.length]);

/** What the session tracks; CopyData and CopyDone are passed by count only. */
const SESSION_WANTS = typeSet([FE.Query, FE.Parse, FE.Bind, FE.Execute, FE.Sync, BE.ReadyForQuery]);

function expectedFor(wants: Uint8Array): Msg[] {
  return MESSAGES.filter((m) => wants[m.type] === 1);
}

/** Chunks of STREAM cut at the given offsets (sorted, may repeat: an empty chunk is legal). */
function cut(positions: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of [...positions, STREAM.length]) {
    chunks.push(STREAM.subarray(prev, p));
    prev = p;
  }
  return chunks;
}

/**
 * Scans the chunks and returns every difference from what the scanner must report (empty when
 * right): the exact (type, body) sequence for the wanted types, and `atBoundary` after each chunk.
 * Plain comparisons rather than expect() per frame: this runs hundreds of thousands of times.
 */
function mismatches(chunks: Buffer[], wants: Uint8Array): string[] {
  const expected = expectedFor(wants);
  const problems: string[] = [];
  const scanner = new FrameScanner(wants);
  let n = 0;
  let offset = 0;
  for (const chunk of chunks) {
    scanner.scan(chunk, (type, body) => {
      const e = expected[n];
      if (!e) problems.push(`unexpected extra frame 0x${type.toString(16)} (${body.length} bytes)`);
      else if (type !== e.type || !body.equals(e.body)) {
        problems.push(`frame ${n}: got 0x${type.toString(16)}/${body.length} bytes, want 0x${e.type.toString(16)}/${e.body.length} bytes`);
      }
      if (!scanner.atBoundary) problems.push(`frame ${n}: atBoundary false inside the callback`);
      n++;
    });
    offset += chunk.length;
    if (scanner.atBoundary !== BOUNDARIES.has(offset)) problems.push(`atBoundary=${scanner.atBoundary} after byte ${offset}`);
  }
  if (n !== expected.length) problems.push(`${n} frames reported, want ${expected.length}`);
  return problems;
}

/** Split points: inside each header (1–4 bytes in), at the body start, mid-body and one before the end. */
const INTERESTING = (() => {
  const set = new Set<number>();
  MESSAGES.forEach((m, k) => {
    const s = STARTS[k]!;
    for (let d = 1; d <= 5; d++) set.add(s + d);
    set.add(s + 5 + (m.body.length >> 1));
    if (m.body.length > 1) set.add(s + 5 + m.body.length - 1);
  });
  set.add(STREAM.length);
  return [...set].sort((a, b) => a - b);
})();

// ------------------------------------------------------------------ FrameScanner

describe("FrameScanner: one stream, every way TCP may cut it", () => {
  it("reports wanted messages in order and skips CopyData/CopyDone when all arrive in one chunk", () => {
    const seen: Array<[number, string]> = [];
    const scanner = new FrameScanner(SESSION_WANTS);
    scanner.scan(STREAM, (type, body) => seen.push([type, body.toString("hex")]));
    expect(seen).toEqual(expectedFor(SESSION_WANTS).map((m) => [m.type, m.body.toString("hex")]));
    expect(seen.map(([t]) => String.fromCharCode(t)).join("")).toBe("QPBESZ");
    expect(scanner.atBoundary).toBe(true);
  });

  it("reports every message, the 200 KB CopyData intact, with ALL_TYPES in one chunk", () => {
    const seen: Msg[] = [];
    new FrameScanner(ALL_TYPES).scan(STREAM, (type, body) => seen.push({ type, body }));
    expect(seen.map((m) => m.type)).toEqual(MESSAGES.map((m) => m.type));
    expect(seen[5]!.body.equals(copyPayload)).toBe(true);
    expect(seen[4]!.body.length).toBe(0); // Sync
    expect(parseStatementName(seen[1]!.body)).toBe("stmt_1");
  });

  it("gives the same frames for a split into two chunks at every byte position (CopyData skipped)", () => {
    const failures: string[] = [];
    for (let p = 0; p <= STREAM.length; p++) {
      const m = mismatches(cut([p]), SESSION_WANTS);
      if (m.length) failures.push(`split at ${p}: ${m.join("; ")}`);
      if (failures.length > 5) break;
    }
    expect(failures).toEqual([]);
  });

  it("gives the same frames for two chunks with every type wanted (every position outside the CopyData body, every 997th inside)", () => {
    const copyStart = BODY_AT[5]!;
    const copyEnd = copyStart + COPY_BYTES;
    const failures: string[] = [];
    let splits = 0;
    for (let p = 0; p <= STREAM.length; p++) {
      if (p > copyStart + 8 && p < copyEnd - 8 && p % 997 !== 0) continue;
      splits++;
      const m = mismatches(cut([p]), ALL_TYPES);
      if (m.length) failures.push(`split at ${p}: ${m.join("; ")}`);
      if (failures.length > 5) break;
    }
    expect(failures).toEqual([]);
    expect(splits).toBeGreaterThan(300);
  });

  it("gives the same frames for three chunks cut inside headers, at body starts, mid-body and before the end", () => {
    // Every pair of interesting positions, including equal ones (an empty middle chunk).
    const failures: string[] = [];
    let cases = 0;
    for (let a = 0; a < INTERESTING.length; a++) {
      for (let b = a; b < INTERESTING.length; b++) {
        const chunks = cut([INTERESTING[a]!, INTERESTING[b]!]);
        for (const wants of [SESSION_WANTS, ALL_TYPES]) {
          cases++;
          const m = mismatches(chunks, wants);
          if (m.length) failures.push(`cuts at ${INTERESTING[a]},${INTERESTING[b]} (${wants === ALL_TYPES ? "all" : "session"}): ${m.join("; ")}`);
        }
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
    // Each header is cut 1, 2, 3 and 4 bytes in.
    for (const s of STARTS) expect(INTERESTING).toEqual(expect.arrayContaining([s + 1, s + 2, s + 3, s + 4]));
    expect(cases).toBeGreaterThan(2000);
  });

  it("gives the same frames byte by byte, and atBoundary is true exactly at message boundaries", () => {
    const bytes = Array.from({ length: STREAM.length }, (_, i) => STREAM.subarray(i, i + 1));
    expect(mismatches(bytes, SESSION_WANTS)).toEqual([]);
    expect(mismatches(bytes, ALL_TYPES)).toEqual([]);
    // The boundary count itself: one per message plus the start.
    const scanner = new FrameScanner(SESSION_WANTS);
    let trueAt = 0;
    for (const b of bytes) {
      scanner.scan(b, () => undefined);
      if (scanner.atBoundary) trueAt++;
    }
    expect(trueAt).toBe(MESSAGES.length);
  });

  it("several complete messages in one chunk, then a split one, then the rest", () => {
    // Query+Parse+Bind whole, Execute cut mid-body, rest in the second chunk.
    const p = BODY_AT[3]! + 2;
    expect(mismatches(cut([p]), SESSION_WANTS)).toEqual([]);
    const scanner = new FrameScanner(SESSION_WANTS);
    const types: number[] = [];
    scanner.scan(STREAM.subarray(0, p), (t) => types.push(t));
    expect(types).toEqual([FE.Query, FE.Parse, FE.Bind]);
    expect(scanner.atBoundary).toBe(false);
  });
});

describe("FrameScanner: views and copies", () => {
  it("a wanted body that arrives within one chunk is a view of that chunk, not a copy", () => {
    const bodies: Buffer[] = [];
    new FrameScanner(ALL_TYPES).scan(STREAM, (_t, body) => bodies.push(body));
    MESSAGES.forEach((m, k) => {
      if (m.body.length === 0) return expect(bodies[k]!.length).toBe(0);
      expect(bodies[k]!.buffer).toBe(STREAM.buffer);
      expect(bodies[k]!.byteOffset).toBe(STREAM.byteOffset + BODY_AT[k]!);
    });
    // The 200 KB CopyData included: no copy for a body that is whole in the chunk.
    expect(bodies[5]!.length).toBe(COPY_BYTES);
    expect(bodies[5]!.buffer).toBe(STREAM.buffer);
  });

  it("a body whose header ends one chunk and which fills the next is a view of the second chunk", () => {
    const [a, b, c] = cut([BODY_AT[1]!, STARTS[2]!]); // Parse header | Parse body | the rest
    const scanner = new FrameScanner(SESSION_WANTS);
    const got: Buffer[] = [];
    scanner.scan(a!, (_t, body) => got.push(body));
    expect(got).toHaveLength(1); // the Query
    expect(scanner.atBoundary).toBe(false);
    scanner.scan(b!, (_t, body) => got.push(body));
    expect(got).toHaveLength(2);
    expect(got[1]!.equals(MESSAGES[1]!.body)).toBe(true);
    expect(got[1]!.buffer).toBe(b!.buffer);
    expect(got[1]!.byteOffset).toBe(b!.byteOffset);
    expect(scanner.atBoundary).toBe(true);
    scanner.scan(c!, () => undefined);
    expect(scanner.atBoundary).toBe(true);
  });

  it("a wanted body that spans chunks is copied once into a separate buffer with the right bytes", () => {
    const mid = BODY_AT[5]! + 1000;
    const first = Buffer.from(STREAM.subarray(0, mid)); // own, unpooled backing stores (> 4 KB)
    const second = Buffer.from(STREAM.subarray(mid));
    let copy: Buffer | undefined;
    const scanner = new FrameScanner(typeSet([FE.CopyData]));
    scanner.scan(first, () => expect.unreachable("CopyData is not complete yet"));
    scanner.scan(second, (type, body) => {
      expect(type).toBe(FE.CopyData);
      copy = body;
    });
    expect(copy!.equals(copyPayload)).toBe(true);
    expect(copy!.buffer).not.toBe(first.buffer);
    expect(copy!.buffer).not.toBe(second.buffer);
    // Reusing the socket's chunks later does not change what was reported.
    first.fill(0);
    second.fill(0);
    expect(copy!.equals(copyPayload)).toBe(true);
  });

  it("a wanted body that spans reads of one reused buffer keeps its bytes (each read overwrites the last)", () => {
    // The proxy reads every server connection into one buffer: a chunk is valid only while it is scanned.
    const readBuffer = Buffer.alloc(STREAM.length);
    const at = [BODY_AT[5]! + 1000, BODY_AT[5]! + 70_000, STREAM.length];
    const scanner = new FrameScanner(typeSet([FE.CopyData]));
    let copy: Buffer | undefined;
    let from = 0;
    for (const to of at) {
      const chunk = readBuffer.subarray(0, to - from);
      STREAM.copy(chunk, 0, from, to);
      scanner.scan(chunk, (_t, body) => (copy = body));
      if (copy) copy = Buffer.from(copy); // the reader of the last chunk copies before its read returns
      chunk.fill(0xee);
      from = to;
    }
    expect(copy!.equals(copyPayload)).toBe(true);
  });

  it("skips an unwanted 200 KB CopyData without reporting it, across any number of chunks", () => {
    const scanner = new FrameScanner(typeSet([BE.ReadyForQuery]));
    const types: number[] = [];
    for (let i = 0; i < STREAM.length; i += 4096) scanner.scan(STREAM.subarray(i, i + 4096), (t) => types.push(t));
    expect(types).toEqual([BE.ReadyForQuery]);
    expect(scanner.atBoundary).toBe(true);
  });
});

describe("FrameScanner: invalid lengths", () => {
  it.each([0, 1, 3, -1, -2147483648])("length %i (below 4, the length's own size) throws ProtocolError", (len) => {
    const scanner = new FrameScanner(ALL_TYPES);
    const err = captured(() => scanner.scan(header(FE.Query, len), () => undefined));
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.message).toBe(`invalid message length ${len} for message type 0x51`);
  });

  it("a body one byte over the limit throws as soon as the header is complete; the limit itself is accepted", () => {
    const scanner = new FrameScanner(ALL_TYPES, 1000);
    const bodies: number[] = [];
    scanner.scan(w.message(FE.CopyData, Buffer.alloc(1000, 7)), (_t, body) => bodies.push(body.length));
    expect(bodies).toEqual([1000]);
    // Header split 3 + 2: nothing happens until the header is whole, then the limit applies.
    const h = header(FE.CopyData, 1000 + 4 + 1);
    scanner.scan(h.subarray(0, 3), () => undefined);
    expect(scanner.atBoundary).toBe(false);
    expect(() => scanner.scan(h.subarray(3), () => undefined)).toThrow(ProtocolError);
  });

  it("the default limit is MAX_MESSAGE_BYTES (1 GB of body)", () => {
    const ok = new FrameScanner(ALL_TYPES);
    ok.scan(header(FE.CopyData, MAX_MESSAGE_BYTES + 4), () => undefined);
    expect(ok.atBoundary).toBe(false); // waiting for a 1 GB body, not rejected
    expect(() => new FrameScanner(ALL_TYPES).scan(header(FE.CopyData, MAX_MESSAGE_BYTES + 5), () => undefined)).toThrow(/invalid message length 1073741829/);
    expect(() => new FrameScanner(ALL_TYPES).scan(header(FE.CopyData, 0x7fffffff), () => undefined)).toThrow(ProtocolError);
  });

  it("messages before a bad header in the same chunk are still reported, in order", () => {
    const types: number[] = [];
    const chunk = Buffer.concat([w.query("select 1"), w.sync(), header(FE.Query, 2)]);
    expect(() => new FrameScanner(ALL_TYPES).scan(chunk, (t) => types.push(t))).toThrow(ProtocolError);
    expect(types).toEqual([FE.Query, FE.Sync]);
  });
});

describe("FrameScanner.setWants", () => {
  it("throws inside a header or a body, and the scan carries on unchanged afterwards", () => {
    const scanner = new FrameScanner(SESSION_WANTS);
    const types: number[] = [];
    const onFrame = (t: number) => types.push(t);
    scanner.scan(STREAM.subarray(0, 3), onFrame); // inside the Query header
    expect(() => scanner.setWants(ALL_TYPES)).toThrow("FrameScanner.setWants in the middle of a message");
    scanner.scan(STREAM.subarray(3, BODY_AT[5]! + 10), onFrame); // inside the CopyData body
    expect(() => scanner.setWants(ALL_TYPES)).toThrow(/middle of a message/);
    scanner.scan(STREAM.subarray(BODY_AT[5]! + 10), onFrame);
    expect(types).toEqual([FE.Query, FE.Parse, FE.Bind, FE.Execute, FE.Sync, BE.ReadyForQuery]);
  });

  it("between messages it changes which of the following messages are reported", () => {
    const scanner = new FrameScanner(typeSet([FE.Query]));
    const types: number[] = [];
    scanner.scan(STREAM.subarray(0, STARTS[2]!), (t) => types.push(t)); // Query, Parse
    expect(types).toEqual([FE.Query]);
    scanner.setWants(typeSet([FE.CopyData, FE.CopyDone]));
    scanner.scan(STREAM.subarray(STARTS[2]!), (t) => types.push(t));
    expect(types).toEqual([FE.Query, FE.CopyData, FE.CopyDone]);
  });

  it("called from the frame callback, it applies to the next message of the same chunk", () => {
    const scanner = new FrameScanner(typeSet([FE.Sync]));
    const types: number[] = [];
    scanner.scan(STREAM, (t) => {
      types.push(t);
      if (t === FE.Sync) scanner.setWants(ALL_TYPES);
    });
    expect(types).toEqual([FE.Sync, FE.CopyData, FE.CopyDone, BE.ReadyForQuery]);
  });
});

// ------------------------------------------------------------------ StartupReader

const STARTUP_PARAMS = { user: "app_owner", database: "app__acme", application_name: "billing – ünïcode", options: "-c search_path=app" };
const sslRequest = () => Buffer.concat([int32(8), int32(STARTUP.SSL_REQUEST)]);

describe("StartupReader", () => {
  const packet = w.startupMessage(STARTUP_PARAMS);

  it("returns the startup packet only once complete, for a split at every byte position", () => {
    const failures: number[] = [];
    for (let p = 0; p <= packet.length; p++) {
      const r = new StartupReader();
      r.push(packet.subarray(0, p));
      const early = p < packet.length ? r.next() : undefined;
      r.push(packet.subarray(p));
      const body = r.next();
      if (early !== undefined || !body?.equals(packet.subarray(4)) || r.next() !== undefined || r.takeRest().length !== 0) failures.push(p);
    }
    expect(failures).toEqual([]);
    const r = new StartupReader();
    r.push(packet);
    expect(parseStartupPacket(r.next()!)).toEqual({ kind: "startup", minor: 0, params: STARTUP_PARAMS });
  });

  it("byte by byte, next() is undefined until the last byte", () => {
    const r = new StartupReader();
    const results: Array<Buffer | undefined> = [];
    for (let i = 0; i < packet.length; i++) {
      r.push(packet.subarray(i, i + 1));
      results.push(r.next());
    }
    expect(results.slice(0, -1).every((x) => x === undefined)).toBe(true);
    expect(results.at(-1)!.equals(packet.subarray(4))).toBe(true);
  });

  it("SSLRequest with pipelined bytes: returns the request and keeps what follows for takeRest()", () => {
    const pipelined = Buffer.concat([packet, w.query("select 1")]);
    const r = new StartupReader();
    r.push(Buffer.concat([sslRequest(), pipelined.subarray(0, 10)]));
    r.push(pipelined.subarray(10));
    expect(parseStartupPacket(r.next()!)).toEqual({ kind: "ssl" });
    const rest = r.takeRest();
    expect(rest.equals(pipelined)).toBe(true);
    expect(r.next()).toBeUndefined();
    expect(r.takeRest().length).toBe(0);
  });

  it("SSLRequest then the startup packet in one chunk: next() returns both, then the pipelined Query is the rest", () => {
    const r = new StartupReader();
    const q = w.query("select 1");
    r.push(Buffer.concat([sslRequest(), packet, q]));
    expect(parseStartupPacket(r.next()!).kind).toBe("ssl");
    expect(parseStartupPacket(r.next()!)).toEqual({ kind: "startup", minor: 0, params: STARTUP_PARAMS });
    expect(r.takeRest().equals(q)).toBe(true);
  });

  it.each([0, 4, 7, -1, 10_005, 0x7fffffff])("length %i throws ProtocolError as soon as the length is read", (len) => {
    const r = new StartupReader();
    r.push(int32(len)); // only the length: a 2 GB claim is refused before waiting for it
    const err = captured(() => r.next());
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err.message).toBe(`invalid startup packet length ${len}`);
  });

  it("accepts 8 bytes (a bare code) up to 10004, PostgreSQL's limit (10000 after the length word)", () => {
    // PostgreSQL 15 answers a 10004-byte startup packet and drops a 10005-byte one ("invalid length of startup packet").
    const r = new StartupReader();
    r.push(sslRequest());
    expect(r.next()!.equals(int32(STARTUP.SSL_REQUEST))).toBe(true);
    const big = Buffer.alloc(10_004);
    big.writeInt32BE(10_004, 0);
    big.writeInt32BE(STARTUP.PROTOCOL_3_0, 4);
    r.push(big.subarray(0, 10_003));
    expect(r.next()).toBeUndefined();
    r.push(big.subarray(10_003));
    expect(r.next()!.length).toBe(10_000);
  });
});

// ------------------------------------------------------------------ parseStartupPacket

describe("parseStartupPacket", () => {
  const bodyOf = (packet: Buffer) => {
    const r = new StartupReader();
    r.push(packet);
    return r.next()!;
  };
  const versioned = (major: number, minor: number, params: Buffer) => {
    const body = Buffer.concat([int32((major << 16) | minor), params]);
    return Buffer.concat([int32(body.length + 4), body]);
  };

  it("protocol 3.0 startup parameters, including an empty value", () => {
    const p = parseStartupPacket(bodyOf(w.startupMessage({ ...STARTUP_PARAMS, client_encoding: "" })));
    expect(p).toEqual({ kind: "startup", minor: 0, params: { ...STARTUP_PARAMS, client_encoding: "" } });
  });

  it("SSLRequest and GSSENCRequest", () => {
    expect(parseStartupPacket(bodyOf(sslRequest()))).toEqual({ kind: "ssl" });
    expect(parseStartupPacket(bodyOf(Buffer.concat([int32(8), int32(STARTUP.GSSENC_REQUEST)])))).toEqual({ kind: "gssenc" });
  });

  it("CancelRequest carries the pid and secret as the writer encodes them (secret may be negative)", () => {
    expect(parseStartupPacket(bodyOf(w.cancelRequest(12345, -123456789)))).toEqual({ kind: "cancel", pid: 12345, secret: -123456789 });
    expect(parseStartupPacket(bodyOf(w.cancelRequest(0x7fffffff, 0x7ffffffe)))).toEqual({ kind: "cancel", pid: 0x7fffffff, secret: 0x7ffffffe });
  });

  it("a CancelRequest without the secret is a protocol error", () => {
    const short = Buffer.concat([int32(12), int32(STARTUP.CANCEL_REQUEST), int32(12345)]);
    expect(() => parseStartupPacket(bodyOf(short))).toThrow(ProtocolError);
  });

  it("protocol 2.0 is unsupported, with its version", () => {
    expect(parseStartupPacket(bodyOf(versioned(2, 0, Buffer.from([0]))))).toEqual({ kind: "unsupported", major: 2, minor: 0 });
    expect(parseStartupPacket(bodyOf(versioned(4, 1, Buffer.from([0]))))).toEqual({ kind: "unsupported", major: 4, minor: 1 });
  });

  it("protocol 3.2 (PostgreSQL 18) is a 3.x startup that keeps its minor version and _pq_. options", () => {
    const params = Buffer.concat([
      ...["user", "bob", "database", "app__acme", "_pq_.test_option", "on"].map(w.cstring),
      Buffer.from([0]),
    ]);
    expect(parseStartupPacket(bodyOf(versioned(3, 2, params)))).toEqual({
      kind: "startup",
      minor: 2,
      params: { user: "bob", database: "app__acme", "_pq_.test_option": "on" },
    });
  });

  it("NegotiateProtocolVersion frames as 'v': newest minor, option count, option names", () => {
    const frames: Msg[] = [];
    new FrameScanner(ALL_TYPES).scan(w.negotiateProtocolVersion(0, ["_pq_.a", "_pq_.b"]), (type, body) => frames.push({ type, body }));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.type).toBe(BE.NegotiateProtocolVersion);
    expect(frames[0]!.body.equals(Buffer.concat([int32(0), int32(2), w.cstring("_pq_.a"), w.cstring("_pq_.b")]))).toBe(true);
  });

  it("an unterminated parameter is a protocol error", () => {
    const body = Buffer.concat([int32(STARTUP.PROTOCOL_3_0), Buffer.from("user\0bob")]);
    expect(() => parseStartupPacket(body)).toThrow(/unterminated string/);
  });
});

// ------------------------------------------------------------------ ErrorResponse

describe("parseErrorFields", () => {
  const frame = (msg: Buffer): { type: number; body: Buffer } => {
    const out: Array<{ type: number; body: Buffer }> = [];
    new FrameScanner(ALL_TYPES).scan(msg, (type, body) => out.push({ type, body }));
    expect(out).toHaveLength(1);
    return out[0]!;
  };

  it("round-trips writer.errorResponse with every field", () => {
    const { type, body } = frame(
      w.errorResponse({
        severity: "FATAL",
        code: SQLSTATE.InvalidPassword,
        message: 'password authentication failed for user "bob"',
        detail: "Rôle «bob», tenant acme",
        hint: "Check the password, then reconnect.",
      }),
    );
    expect(type).toBe(BE.ErrorResponse);
    expect(parseErrorFields(body)).toEqual({
      S: "FATAL",
      V: "FATAL",
      C: "28P01",
      M: 'password authentication failed for user "bob"',
      D: "Rôle «bob», tenant acme",
      H: "Check the password, then reconnect.",
    });
  });

  it("omits detail and hint when not given", () => {
    const { body } = frame(w.errorResponse({ severity: "ERROR", code: SQLSTATE.InvalidCatalogName, message: 'database "app__nobody" does not exist' }));
    expect(parseErrorFields(body)).toEqual({ S: "ERROR", V: "ERROR", C: "3D000", M: 'database "app__nobody" does not exist' });
  });

  it("a truncated field is a protocol error", () => {
    expect(() => parseErrorFields(Buffer.from("SFATAL\0Mtrunc"))).toThrow(ProtocolError);
  });
});

function captured(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an exception");
}
