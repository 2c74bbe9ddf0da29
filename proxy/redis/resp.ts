/**
 * RESP2 and RESP3 framing (https://redis.io/docs/reference/protocol-spec/): where a value ends,
 * a client's command and its arguments, and the few replies the proxy writes itself. Only
 * whole values are ever handed on, so a pause, a switch or a refusal always falls between two.
 *
 * Parsing walks the value's tree without recursion: `left` counts the values still to read
 * (an aggregate of n adds n, a map 2n; an attribute adds 2n before the value it annotates).
 */

export class RespProtocolError extends Error {
  override name = "RespProtocolError";
}

const CR = 13;
const LF = 10;
/** Redis's own limits (proto-max-bulk-len default, and its multibulk length bound). */
const MAX_BULK = 512 * 1024 * 1024;
const MAX_ELEMENTS = 1024 * 1024 * 1024;

/** Bytes a caller must hold before an incomplete value can end (at least), absolute in its buffer: set when `valueEnd` or `parseCommand` finds a value incomplete. */
let need = 0;
export const lastNeed = () => need;

/** The integer on the line starting at `from` (after the type byte), and where the next line starts; -1 when the line is incomplete. */
function lineInt(b: Buffer, from: number): [number, number] {
  const cr = b.indexOf(CR, from);
  if (cr < 0 || cr + 1 >= b.length) return [0, -1];
  if (b[cr + 1] !== LF) throw new RespProtocolError("expected CRLF");
  let i = from;
  let neg = false;
  if (b[i] === 45 /* - */) (neg = true), i++;
  if (i === cr) throw new RespProtocolError("expected a number");
  let n = 0;
  for (; i < cr; i++) {
    const d = b[i]! - 48;
    if (d < 0 || d > 9) throw new RespProtocolError(`invalid length "${b.toString("latin1", from, Math.min(cr, from + 20))}"`);
    n = n * 10 + d;
  }
  return [neg ? -n : n, cr + 2];
}

/** End (exclusive) of the RESP value starting at `at`, or -1 when `b` does not hold all of it yet. */
export function valueEnd(b: Buffer, at: number): number {
  let left = 1;
  let i = at;
  while (left > 0) {
    if (i >= b.length) return incomplete(i + 1);
    const type = b[i]!;
    switch (type) {
      case 43: // + simple string
      case 45: // - error
      case 58: // : integer
      case 95: // _ null
      case 44: // , double
      case 35: // # boolean
      case 40: {
        // ( big number
        const cr = b.indexOf(CR, i + 1);
        if (cr < 0 || cr + 1 >= b.length) return incomplete(b.length + 1);
        i = cr + 2;
        left--;
        break;
      }
      case 36: // $ bulk string
      case 33: // ! bulk error
      case 61: {
        // = verbatim string
        const [len, next] = lineInt(b, i + 1);
        if (next < 0) return incomplete(b.length + 1);
        if (len < 0) {
          i = next; // null bulk ($-1)
        } else {
          if (len > MAX_BULK) throw new RespProtocolError(`bulk length ${len} over the limit`);
          if (next + len + 2 > b.length) return incomplete(next + len + 2);
          i = next + len + 2;
        }
        left--;
        break;
      }
      case 42: // * array
      case 126: // ~ set
      case 62: // > push
      case 37: // % map
      case 124: {
        // | attribute
        const [n, next] = lineInt(b, i + 1);
        if (next < 0) return incomplete(b.length + 1);
        if (n > MAX_ELEMENTS) throw new RespProtocolError(`aggregate of ${n} elements`);
        i = next;
        if (type === 124) left += 2 * n; // the attribute, then the value it annotates
        else left += (n < 0 ? 0 : type === 37 ? 2 * n : n) - 1;
        break;
      }
      default:
        throw new RespProtocolError(`unexpected byte 0x${type.toString(16)} where a RESP value starts`);
    }
  }
  return i;
}

function incomplete(atLeast: number): -1 {
  need = atLeast;
  return -1;
}

/** A client's command: its arguments (the name first) as slices of the buffer it came in. */
export interface ParsedCommand {
  args: Buffer[];
  /** Offset just past the command. */
  end: number;
  /** Sent as an inline command (a line of words, as `telnet` or `redis-cli` in a pipe may). */
  inline: boolean;
}

/**
 * The command starting at `at`: a RESP array of bulk strings, or an inline command line.
 * Undefined when it is not all in `b` yet (`lastNeed()` says how much must be). An empty inline line
 * is a command of no arguments (Redis ignores it).
 */
export function parseCommand(b: Buffer, at: number): ParsedCommand | undefined {
  if (at >= b.length) return void incomplete(at + 1);
  if (b[at] !== 42 /* * */) {
    const lf = b.indexOf(LF, at);
    if (lf < 0) {
      if (b.length - at > 64 * 1024) throw new RespProtocolError("too big inline request");
      return void incomplete(b.length + 1);
    }
    const line = b.toString("latin1", at, b[lf - 1] === CR ? lf - 1 : lf);
    const args = line.split(/\s+/).filter((w) => w.length > 0).map((w) => Buffer.from(w, "latin1"));
    return { args, end: lf + 1, inline: true };
  }
  const [n, first] = lineInt(b, at + 1);
  if (first < 0) return void incomplete(b.length + 1);
  if (n > MAX_ELEMENTS) throw new RespProtocolError(`invalid multibulk length ${n}`);
  const args: Buffer[] = new Array(Math.max(0, n));
  let i = first;
  for (let k = 0; k < n; k++) {
    if (i >= b.length) return void incomplete(i + 1);
    if (b[i] !== 36 /* $ */) throw new RespProtocolError(`expected '$', got '${String.fromCharCode(b[i]!)}'`);
    const [len, data] = lineInt(b, i + 1);
    if (data < 0) return void incomplete(b.length + 1);
    if (len < 0 || len > MAX_BULK) throw new RespProtocolError(`invalid bulk length ${len}`);
    if (data + len + 2 > b.length) return void incomplete(data + len + 2);
    args[k] = b.subarray(data, data + len);
    i = data + len + 2;
  }
  return { args, end: i, inline: false };
}

/**
 * Collects bytes until whole values can be read: `feed` a chunk, then read frames from
 * `buffer` starting at `offset`; `consumed(end)` marks what was read. A value that spans chunks
 * is joined once enough bytes have come (not at every chunk: `lastNeed()`).
 */
export class RespReader {
  private parts: Buffer[] = [];
  private held = 0;
  private wanted = 0;
  buffer: Buffer = Buffer.alloc(0);
  offset = 0;

  /** Adds a chunk; false while the value in progress cannot be complete yet. */
  feed(chunk: Buffer): boolean {
    if (this.offset >= this.buffer.length && this.parts.length === 0) {
      this.buffer = chunk;
      this.offset = 0;
      return true;
    }
    if (this.parts.length === 0) {
      const rest = this.buffer.subarray(this.offset);
      this.parts.push(rest);
      this.held = rest.length;
    }
    this.parts.push(chunk);
    this.held += chunk.length;
    if (this.held < this.wanted) return false;
    this.buffer = Buffer.concat(this.parts, this.held);
    this.parts = [];
    this.held = 0;
    this.wanted = 0;
    this.offset = 0;
    return true;
  }

  /** The value at `offset` is incomplete: wait for at least `absoluteNeed` bytes of `buffer` (`lastNeed()`). */
  waitFor(absoluteNeed: number): void {
    this.wanted = absoluteNeed - this.offset;
  }

  /** Nothing partial is held. */
  get atBoundary(): boolean {
    return this.offset >= this.buffer.length && this.parts.length === 0;
  }
}

/** A command as RESP (what the proxy sends of its own: logins, replays). */
export function encodeCommand(args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === "string" ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/** An error reply: `-<CODE> message` (the code is the first word, as clients read it). */
export function errorReply(message: string): Buffer {
  return Buffer.from(`-${message.replace(/[\r\n]+/g, " ")}\r\n`);
}

export const OK = Buffer.from("+OK\r\n");
export const nullReply = (resp3: boolean) => Buffer.from(resp3 ? "_\r\n" : "*-1\r\n");
/** A RESP3 client-tracking invalidation of every key (a null list: flush the whole cache). */
export const INVALIDATE_ALL = Buffer.from(">2\r\n$10\r\ninvalidate\r\n_\r\n");

/** The type byte of the value at `at`. */
export const typeAt = (b: Buffer, at: number): number => b[at]!;

/** Whether the value at `at` is a null (`_`, `$-1`, `*-1`). */
export function isNull(b: Buffer, at: number): boolean {
  const t = b[at];
  return t === 95 || ((t === 36 || t === 42) && b[at + 1] === 45);
}

/**
 * The first `max` elements of the array or push at `at`, each as a string when it is a bulk or
 * simple string (or an integer), else undefined. Used to recognise pub/sub messages and
 * subscription confirmations.
 */
export function headStrings(b: Buffer, at: number, max: number): (string | undefined)[] {
  const t = b[at];
  if (t !== 42 && t !== 62) return [];
  const [n, first] = lineInt(b, at + 1);
  const out: (string | undefined)[] = [];
  let i = first;
  for (let k = 0; k < Math.min(n, max); k++) {
    const type = b[i];
    if (type === 36) {
      const [len, data] = lineInt(b, i + 1);
      if (len < 0) out.push(undefined), (i = data);
      else out.push(b.toString("utf8", data, data + len)), (i = data + len + 2);
    } else if (type === 43 || type === 58) {
      const cr = b.indexOf(CR, i + 1);
      out.push(b.toString("utf8", i + 1, cr));
      i = cr + 2;
    } else {
      out.push(undefined);
      i = valueEnd(b, i);
    }
  }
  return out;
}

/** An error reply's text (without the `-`), or undefined when the value is not an error. */
export function errorText(b: Buffer, at: number, end: number): string | undefined {
  if (b[at] === 45) return b.toString("utf8", at + 1, end - 2);
  if (b[at] === 33) {
    const [, data] = lineInt(b, at + 1);
    return b.toString("utf8", data, end - 2);
  }
  return undefined;
}
