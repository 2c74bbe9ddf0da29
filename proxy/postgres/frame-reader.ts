/**
 * Incremental framing of the PostgreSQL protocol (spec §55.2, "Message Flow"; every message after
 * startup is `type:Byte1 length:Int32 body`, the length counting itself but not the type byte).
 *
 * The proxy forwards the bytes it receives untouched; it only needs to *see* a few message types
 * (ReadyForQuery, Parse, ParameterStatus, …). `FrameScanner` walks the chunks a socket delivers,
 * calls back for the wanted types with a view of the body (a copy only when a wanted body spans two
 * chunks) and skips the rest by counting, so a 100 MB COPY costs one subtraction per chunk.
 */
import { MAX_MESSAGE_BYTES, MAX_STARTUP_BYTES } from "./codes";

export class ProtocolError extends Error {
  override name = "ProtocolError";
}

const EMPTY = Buffer.alloc(0);

/** Which message types a scanner reports (all others are skipped without copying). */
export function typeSet(types: Iterable<number>): Uint8Array {
  const set = new Uint8Array(256);
  for (const t of types) set[t] = 1;
  return set;
}

export const ALL_TYPES = typeSet(Array.from({ length: 256 }, (_, i) => i));

/** `end`: the offset in the chunk just past this message (it may have begun in an earlier chunk). */
export type FrameHandler = (type: number, body: Buffer, end: number) => void;

export class FrameScanner {
  /** A header split across chunks: its bytes so far (numbers, not a Buffer: a scanner lives per connection). */
  private headerLen = 0;
  private partialType = 0;
  private partialLen = 0;
  private type = 0;
  private remaining = 0;
  private inBody = false;
  private keep = false;
  private parts: Buffer[] = [];

  constructor(
    private wants: Uint8Array,
    private readonly maxBytes = MAX_MESSAGE_BYTES,
  ) {}

  /** Change which types are reported; only between messages. */
  setWants(wants: Uint8Array): void {
    if (!this.atBoundary) throw new Error("FrameScanner.setWants in the middle of a message");
    this.wants = wants;
  }

  /** True when every byte seen so far belongs to a complete message. */
  get atBoundary(): boolean {
    return this.headerLen === 0 && !this.inBody;
  }

  /** The type of a message whose 5-byte header is only partly received, else -1. */
  get partialHeaderType(): number {
    return this.headerLen > 0 ? this.partialType : -1;
  }

  /** How many bytes of that header were received (0 when none). */
  get partialHeaderLength(): number {
    return this.headerLen;
  }

  scan(chunk: Buffer, onFrame: FrameHandler): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.inBody) {
        const take = Math.min(this.remaining, n - i);
        // A part the body goes on after is copied: the chunk may be a read buffer the next read overwrites.
        if (this.keep) this.parts.push(take < this.remaining ? Buffer.from(chunk.subarray(i, i + take)) : chunk.subarray(i, i + take));
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) {
          this.inBody = false;
          if (this.keep) {
            const body = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
            this.parts = [];
            onFrame(this.type, body, i);
          }
        }
        continue;
      }
      let len: number;
      if (this.headerLen === 0 && n - i >= 5) {
        this.type = chunk[i]!;
        len = chunk.readInt32BE(i + 1);
        i += 5;
      } else {
        while (this.headerLen < 5 && i < n) {
          if (this.headerLen === 0) this.partialType = chunk[i]!;
          else this.partialLen = ((this.partialLen << 8) | chunk[i]!) >>> 0;
          this.headerLen++;
          i++;
        }
        if (this.headerLen < 5) return;
        this.headerLen = 0;
        this.type = this.partialType;
        len = this.partialLen | 0; // as readInt32BE: a length over 2^31 reads negative and is refused
        this.partialLen = 0;
      }
      if (len < 4 || len - 4 > this.maxBytes) {
        throw new ProtocolError(`invalid message length ${len} for message type 0x${this.type.toString(16)}`);
      }
      const bodyLen = len - 4;
      this.keep = this.wants[this.type] === 1;
      if (n - i >= bodyLen) {
        // Whole body in this chunk: a view, no copy.
        if (this.keep) onFrame(this.type, bodyLen === 0 ? EMPTY : chunk.subarray(i, i + bodyLen), i + bodyLen);
        i += bodyLen;
        continue;
      }
      this.remaining = bodyLen;
      this.inBody = true;
    }
  }
}

/**
 * The untyped packets a connection opens with (StartupMessage, SSLRequest, GSSENCRequest,
 * CancelRequest: `length:Int32 code:Int32 …`). Returns the packet once complete, keeping any bytes
 * that follow it (a client may pipeline its first typed message after the startup packet).
 */
export class StartupReader {
  private buf: Buffer = EMPTY;

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** The next complete packet's body (after the length), or undefined if more bytes are needed. */
  next(): Buffer | undefined {
    if (this.buf.length < 4) return undefined;
    const len = this.buf.readInt32BE(0);
    // PostgreSQL bounds the packet without its length word: up to MAX_STARTUP_BYTES + 4 in all.
    if (len < 8 || len - 4 > MAX_STARTUP_BYTES) throw new ProtocolError(`invalid startup packet length ${len}`);
    if (this.buf.length < len) return undefined;
    const body = this.buf.subarray(4, len);
    this.buf = this.buf.subarray(len);
    return body;
  }

  /** Bytes received after the last packet returned. */
  takeRest(): Buffer {
    const rest = this.buf;
    this.buf = EMPTY;
    return rest;
  }
}
