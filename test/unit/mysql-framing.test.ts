import { describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { LogicalPacket, MAX_PAYLOAD, MysqlProtocolError, PacketScanner, PayloadReader, PayloadWriter, encodePacket, lenencInt, type Packet } from "../../proxy/mysql/packets";
import { checkNativeReply, nativeReply, nativeVerifier, newScramble, parseNativeVerifier } from "../../proxy/mysql/native-password";
import { createRequire } from "node:module";
import * as path from "node:path";
// mysql2's own implementation of the client side, as the reference (a file its exports do not list).
const load = createRequire(__filename);
const auth41 = load(path.join(path.dirname(load.resolve("mysql2")), "lib", "auth_41.js")) as { calculateToken(pw: string, s1: Buffer, s2: Buffer): Buffer; calculateTokenFromPasswordSha(sha: Buffer, s1: Buffer, s2: Buffer): Buffer };

interface Logical {
  seq: number;
  kind: number;
  payload: Buffer;
}

/** Feed `chunks` and return the logical packets (with their first sequence id) and the raw physical reports. */
function scan(chunks: Buffer[], wants?: (kind: number, length: number) => boolean): { logical: Logical[]; physical: Packet[]; boundary: boolean } {
  const physical: Packet[] = [];
  const logical: Logical[] = [];
  const join = new LogicalPacket();
  let seq = -1;
  const s = new PacketScanner((p) => {
    physical.push(p);
    if (p.first) seq = p.seq;
    const whole = join.add(p);
    if (whole) logical.push({ seq, kind: p.kind, payload: Buffer.from(whole) });
  }, wants);
  for (const c of chunks) s.feed(c);
  return { logical, physical, boundary: s.atBoundary };
}

function stream(payloads: Buffer[]): { bytes: Buffer; expected: Logical[] } {
  const parts: Buffer[] = [];
  const expected: Logical[] = [];
  payloads.forEach((p, i) => {
    const seq = (i * 7) & 0xff;
    parts.push(encodePacket(seq, p).bytes);
    expected.push({ seq, kind: p.length ? p[0]! : -1, payload: p });
  });
  return { bytes: Buffer.concat(parts), expected };
}

describe("MySQL packet framing", () => {
  const small = [Buffer.from([0x03, ...Buffer.from("select 1")]), Buffer.alloc(0), Buffer.from([0x0e]), randomBytes(300), Buffer.from([0xff, 0x15, 0x04, 0x23])];

  it("reads packets whole, and split at every position", () => {
    const { bytes, expected } = stream(small);
    expect(scan([bytes]).logical).toEqual(expected);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = scan([bytes.subarray(0, cut), bytes.subarray(cut)]);
      expect(r.logical, `cut at ${cut}`).toEqual(expected);
      expect(r.boundary).toBe(true);
    }
  });

  it("split at every pair of positions (three pieces), and one byte at a time", () => {
    const { bytes, expected } = stream(small.slice(0, 4).map((b) => b.subarray(0, 40)));
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b++) {
        expect(scan([bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]).logical, `cuts at ${a}, ${b}`).toEqual(expected);
      }
    }
    expect(scan([...bytes].map((x) => Buffer.from([x]))).logical).toEqual(expected);
  });

  it("is mid-packet until the last byte of a packet has come", () => {
    const { bytes } = stream([Buffer.from("hello")]);
    const s = new PacketScanner(() => undefined);
    for (let i = 0; i < bytes.length; i++) {
      expect(s.atBoundary, `after ${i} bytes`).toBe(i === 0);
      s.feed(bytes.subarray(i, i + 1));
    }
    expect(s.atBoundary).toBe(true);
  });

  it("reports the end offset of each packet within the chunk that completed it", () => {
    const { bytes } = stream(small);
    const ends = scan([bytes]).physical.map((p) => p.end);
    let off = 0;
    expect(ends).toEqual(small.map((p) => (off += 4 + p.length)));
  });

  it("skips the bodies it is not asked for, but still reports each packet with its kind", () => {
    const { bytes, expected } = stream(small);
    const r = scan([bytes.subarray(0, 7), bytes.subarray(7)], (kind) => kind === 0xff);
    expect(r.logical.map((l) => l.kind)).toEqual(expected.map((e) => e.kind));
    expect(r.logical.map((l) => l.payload.length)).toEqual(expected.map((e) => (e.kind === 0xff ? e.payload.length : 0)));
  });

  it("refuses to collect a wanted packet over its limit", () => {
    const s = new PacketScanner(() => undefined, () => true, 100);
    expect(() => s.feed(encodePacket(0, Buffer.alloc(101, 1)).bytes)).toThrow(MysqlProtocolError);
  });

  describe("packets of 16 MB and more", () => {
    for (const size of [MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 5, 2 * MAX_PAYLOAD]) {
      it(`a payload of ${size} bytes: ${Math.floor(size / MAX_PAYLOAD) + 1} physical packets, one logical`, () => {
        const payload = Buffer.alloc(size, 0x61);
        payload[0] = 0x03;
        payload[size - 1] = 0x7a;
        const { bytes, nextSeq } = encodePacket(250, payload);
        const count = Math.floor(size / MAX_PAYLOAD) + 1;
        expect(bytes.length).toBe(size + 4 * count);
        expect(nextSeq).toBe((250 + count) & 0xff);
        const tail = Buffer.from([0x0e]);
        const all = Buffer.concat([bytes, encodePacket(0, tail).bytes]);
        // Cuts around every header and inside the bodies.
        const cuts = [0, 1, 3, 4, 5, MAX_PAYLOAD + 3, MAX_PAYLOAD + 4, MAX_PAYLOAD + 6, MAX_PAYLOAD + 8, MAX_PAYLOAD + 9, all.length - 5, all.length - 1].filter((c) => c <= all.length);
        for (const cut of cuts) {
          const r = scan([all.subarray(0, cut), all.subarray(cut)]);
          expect(r.logical.length, `cut at ${cut}`).toBe(2);
          expect(r.logical[0]!.seq).toBe(250);
          expect(r.logical[0]!.kind).toBe(0x03);
          expect(r.logical[0]!.payload.equals(payload), `cut at ${cut}`).toBe(true);
          expect(r.logical[1]!.payload).toEqual(tail);
          expect(r.physical.map((p) => p.seq)).toEqual([...Array.from({ length: count }, (_, i) => (250 + i) & 0xff), 0]);
          expect(r.physical.slice(0, count).map((p) => p.more)).toEqual(Array.from({ length: count }, (_, i) => i < count - 1));
        }
      });
    }
  });
});

describe("payload types", () => {
  it("length-encoded integers at each width", () => {
    for (const v of [0, 1, 250, 251, 0xffff, 0x10000, 0xffffff, 0x1000000, 2 ** 40]) {
      const r = new PayloadReader(lenencInt(v));
      expect(r.lenenc()).toBe(v);
      expect(r.left).toBe(0);
    }
    expect(lenencInt(250).length).toBe(1);
    expect(lenencInt(251).length).toBe(3);
    expect(lenencInt(0x10000).length).toBe(4);
    expect(lenencInt(0x1000000).length).toBe(9);
  });

  it("writes and reads back a mixed payload; a short one fails clearly", () => {
    const b = new PayloadWriter().u8(0x0a).cstring("10.11.6-MariaDB").u32(77).lenencString("déjà").u16(0x0002).zeros(3).build();
    const r = new PayloadReader(b);
    expect([r.u8(), r.cstring(), r.u32(), r.lenencString(), r.u16()]).toEqual([0x0a, "10.11.6-MariaDB", 77, "déjà", 2]);
    expect(r.rest()).toEqual(Buffer.alloc(3));
    expect(() => new PayloadReader(Buffer.from([0xfc, 1])).lenenc()).toThrow(/packet too short/);
    expect(() => new PayloadReader(Buffer.from("abc")).cstring()).toThrow(/unterminated/);
  });
});

describe("mysql_native_password without a plaintext", () => {
  it("the verifier is MariaDB's PASSWORD()", () => {
    // SELECT PASSWORD('password') on MariaDB (a published value).
    expect(nativeVerifier("password")).toBe("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
    expect(parseNativeVerifier(nativeVerifier("x"))!.length).toBe(20);
    expect(parseNativeVerifier("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19")).toBeUndefined();
  });

  it("checks mysql2's reply and recovers SHA1(password), enough to answer another scramble as mysql2 would", () => {
    const password = "s3cret-é";
    const verifier = parseNativeVerifier(nativeVerifier(password))!;
    const clientScramble = newScramble();
    expect(clientScramble.includes(0)).toBe(false);
    const reply = auth41.calculateToken(password, clientScramble.subarray(0, 8), clientScramble.subarray(8));
    const recovered = checkNativeReply(clientScramble, reply, verifier);
    expect(recovered).toEqual(createHash("sha1").update(password, "utf8").digest());
    const serverScramble = newScramble();
    expect(nativeReply(serverScramble, recovered!)).toEqual(auth41.calculateToken(password, serverScramble.subarray(0, 8), serverScramble.subarray(8)));
  });

  it("refuses a wrong password, an empty reply and a reply to another scramble", () => {
    const verifier = parseNativeVerifier(nativeVerifier("right"))!;
    const s = newScramble();
    expect(checkNativeReply(s, auth41.calculateToken("wrong", s.subarray(0, 8), s.subarray(8)), verifier)).toBeUndefined();
    expect(checkNativeReply(s, Buffer.alloc(0), verifier)).toBeUndefined();
    const other = newScramble();
    expect(checkNativeReply(s, auth41.calculateToken("right", other.subarray(0, 8), other.subarray(8)), verifier)).toBeUndefined();
  });
});
