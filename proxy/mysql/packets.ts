/**
 * Incremental framing of the MySQL client/server protocol (MariaDB's "MySQL protocol" and MySQL's
 * "Protocol Basics": every packet is `payload_length:int<3> sequence_id:int<1> payload`).
 *
 * A payload of exactly 0xFFFFFF bytes means the logical packet continues in the next one (a
 * packet over 16 MB is several; one of a multiple of 0xFFFFFF ends with an empty packet). The proxy
 * forwards bytes as they come, so `PacketScanner` reports each *physical* packet with `more` set
 * while the logical one continues, and hands the body over only for packets its caller asks to see
 * (by the first byte of the logical packet); a 1 GB LOAD DATA stream is skipped by counting.
 */

/** Largest payload of one physical packet; a payload this long is continued by the next one. */
export const MAX_PAYLOAD = 0xffffff;

export class MysqlProtocolError extends Error {
  override name = "MysqlProtocolError";
}

export interface Packet {
  seq: number;
  /** The payload of this physical packet (empty when not wanted). */
  payload: Buffer;
  /** True when the logical packet continues in the next physical one. */
  more: boolean;
  /** True for the first physical packet of a logical one. */
  first: boolean;
  /** The first payload byte of the logical packet (-1 for an empty one). */
  kind: number;
  /** This physical packet's payload length (its body may not have been collected). */
  length: number;
  /** Whether the bodies of this logical packet are collected (`wants` said so). */
  kept: boolean;
  /** Offset in the chunk just past this packet (it may have begun in an earlier chunk). */
  end: number;
}

/**
 * Feed it socket chunks; it calls `onPacket` for every physical packet, in order. `wants(kind,
 * length, chunk, at)` decides, at the start of each logical packet, whether its bodies are collected (a
 * copy only when a body spans chunks) or skipped; `maxWanted` bounds what is collected.
 */
export class PacketScanner {
  private readonly header = Buffer.alloc(4);
  private headerLen = 0;
  private remaining = 0;
  private length = 0;
  private seq = 0;
  private inBody = false;
  private keep = false;
  private parts: Buffer[] = [];
  /** Inside a logical packet (after a physical one of MAX_PAYLOAD bytes). */
  private continuing = false;
  private kind = -1;
  private pendingKind = false;

  constructor(
    private readonly onPacket: (p: Packet) => void,
    /** `chunk[at]` is the logical packet's first payload byte (the caller may rewrite bytes from there on in this chunk). */
    private readonly wants: (kind: number, length: number, chunk: Buffer, at: number) => boolean = () => true,
    private readonly maxWanted = 64 * 1024 * 1024,
  ) {}

  /** True when every byte seen so far belongs to a complete logical packet. */
  get atBoundary(): boolean {
    return this.headerLen === 0 && !this.inBody && !this.continuing;
  }

  feed(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (!this.inBody) {
        const take = Math.min(4 - this.headerLen, n - i);
        chunk.copy(this.header, this.headerLen, i, i + take);
        this.headerLen += take;
        i += take;
        if (this.headerLen < 4) return;
        this.headerLen = 0;
        this.length = this.header.readUIntLE(0, 3);
        this.seq = this.header[3]!;
        this.remaining = this.length;
        this.inBody = true;
        this.parts = [];
        if (!this.continuing) {
          // The kind is the first payload byte; for an empty payload there is none.
          this.pendingKind = this.length > 0;
          this.kind = -1;
          if (this.length === 0) this.keep = false;
        }
        if (this.length === 0) {
          this.finish(Buffer.alloc(0), i);
          continue;
        }
        if (i === n) return; // the body starts in the next chunk
      }
      if (this.pendingKind) {
        this.kind = chunk[i]!;
        this.pendingKind = false;
        this.keep = this.wants(this.kind, this.length, chunk, i);
        if (this.keep && this.length > this.maxWanted) throw new MysqlProtocolError(`packet of ${this.length} bytes is over the ${this.maxWanted}-byte limit`);
      }
      const take = Math.min(this.remaining, n - i);
      if (this.keep) this.parts.push(chunk.subarray(i, i + take));
      this.remaining -= take;
      i += take;
      if (this.remaining === 0) {
        const body = !this.keep ? Buffer.alloc(0) : this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
        this.finish(body, i);
      }
    }
  }

  private finish(payload: Buffer, end: number): void {
    this.inBody = false;
    this.parts = [];
    const first = !this.continuing;
    const more = this.length === MAX_PAYLOAD;
    this.continuing = more;
    this.onPacket({ seq: this.seq, payload, more, first, kind: this.kind, end, length: this.length, kept: this.keep });
  }
}

/** One logical packet as physical packets (split at MAX_PAYLOAD), sequence ids from `seq`. */
export function encodePacket(seq: number, payload: Buffer): { bytes: Buffer; nextSeq: number } {
  const out: Buffer[] = [];
  let off = 0;
  for (;;) {
    const len = Math.min(MAX_PAYLOAD, payload.length - off);
    const h = Buffer.alloc(4);
    h.writeUIntLE(len, 0, 3);
    h[3] = seq & 0xff;
    seq = (seq + 1) & 0xff;
    out.push(h, payload.subarray(off, off + len));
    off += len;
    if (len < MAX_PAYLOAD) break;
  }
  return { bytes: Buffer.concat(out), nextSeq: seq };
}

/** Joins the physical packets of one logical packet (all of them wanted). */
export class LogicalPacket {
  private parts: Buffer[] = [];
  /** The whole payload once the last physical packet is added, else undefined. */
  add(p: Packet): Buffer | undefined {
    this.parts.push(p.payload);
    if (p.more) return undefined;
    const whole = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.parts = [];
    return whole;
  }
}

/** Reading the protocol's basic types from a payload. */
export class PayloadReader {
  constructor(
    readonly buf: Buffer,
    public pos = 0,
  ) {}

  get left(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new MysqlProtocolError(`packet too short: needed ${n} more bytes at offset ${this.pos} of ${this.buf.length}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u24(): number {
    this.need(3);
    const v = this.buf.readUIntLE(this.pos, 3);
    this.pos += 3;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A length-encoded integer (as a number: lengths and counts; ids past 2^53 lose precision). */
  lenenc(): number {
    const b = this.u8();
    if (b < 0xfb) return b;
    if (b === 0xfc) return this.u16();
    if (b === 0xfd) return this.u24();
    if (b === 0xfe) {
      this.need(8);
      const v = Number(this.buf.readBigUInt64LE(this.pos));
      this.pos += 8;
      return v;
    }
    throw new MysqlProtocolError(`0x${b.toString(16)} does not start a length-encoded integer`);
  }

  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  lenencBytes(): Buffer {
    return this.bytes(this.lenenc());
  }

  lenencString(): string {
    return this.lenencBytes().toString("utf8");
  }

  /** A NUL-terminated string. */
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new MysqlProtocolError(`unterminated string at offset ${this.pos}`);
    const v = this.buf.toString("utf8", this.pos, end);
    this.pos = end + 1;
    return v;
  }

  rest(): Buffer {
    const v = this.buf.subarray(this.pos);
    this.pos = this.buf.length;
    return v;
  }
}

/** Building a payload from the protocol's basic types. */
export class PayloadWriter {
  private parts: Buffer[] = [];

  u8(v: number): this {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }

  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    this.parts.push(b);
    return this;
  }

  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.parts.push(b);
    return this;
  }

  lenenc(v: number): this {
    this.parts.push(lenencInt(v));
    return this;
  }

  bytes(b: Buffer): this {
    this.parts.push(b);
    return this;
  }

  lenencBytes(b: Buffer): this {
    return this.lenenc(b.length).bytes(b);
  }

  lenencString(s: string): this {
    return this.lenencBytes(Buffer.from(s, "utf8"));
  }

  cstring(s: string): this {
    this.parts.push(Buffer.from(s, "utf8"), Buffer.from([0]));
    return this;
  }

  zeros(n: number): this {
    this.parts.push(Buffer.alloc(n));
    return this;
  }

  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export function lenencInt(v: number): Buffer {
  if (v < 0xfb) return Buffer.from([v]);
  if (v <= 0xffff) {
    const b = Buffer.alloc(3);
    b[0] = 0xfc;
    b.writeUInt16LE(v, 1);
    return b;
  }
  if (v <= 0xffffff) {
    const b = Buffer.alloc(4);
    b[0] = 0xfd;
    b.writeUIntLE(v, 1, 3);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = 0xfe;
  b.writeBigUInt64LE(BigInt(v), 1);
  return b;
}
