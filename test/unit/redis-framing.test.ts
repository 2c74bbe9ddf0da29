/**
 * RESP framing as the Redis proxy reads it: every reply type of RESP2 and RESP3 (nested
 * aggregates, maps, attributes, nulls, verbatim strings, pushes) and commands (RESP arrays and
 * inline lines) come out whole and unchanged however the bytes are split — at every position,
 * and byte by byte.
 */
import { describe, expect, it } from "vitest";
import { RespReader, encodeCommand, headStrings, isNull, lastNeed, parseCommand, valueEnd, RespProtocolError } from "../../proxy/redis/resp";
import { blockingTimeout, needsOwnConnection, refusal, setinfoAttribute, timeoutMs, withTimeout } from "../../proxy/redis/commands";

const REPLIES = [
  "+OK\r\n",
  "-ERR unknown command\r\n",
  ":12345\r\n",
  ":-7\r\n",
  "$5\r\nhello\r\n",
  "$0\r\n\r\n",
  "$-1\r\n",
  "*-1\r\n",
  "*0\r\n",
  "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
  "*2\r\n*2\r\n:1\r\n$1\r\na\r\n*1\r\n*1\r\n$2\r\nzz\r\n",
  "_\r\n",
  ",3.14\r\n",
  "#t\r\n",
  "(3492890328409238509324850943850943825024385\r\n",
  "!21\r\nSYNTAX invalid syntax\r\n",
  "=15\r\ntxt:Some string\r\n",
  "%2\r\n+first\r\n:1\r\n+second\r\n*2\r\n:2\r\n:3\r\n",
  "~3\r\n+a\r\n+b\r\n+c\r\n",
  ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
  "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2039123\r\n:9543892\r\n",
  `$${1 << 16}\r\n${"x".repeat(1 << 16)}\r\n`,
];

/** Whole values read from `parts` fed one by one into a RespReader (as the session reads a socket). */
function frames(parts: Buffer[], parse: (b: Buffer, at: number) => number): string[] {
  const r = new RespReader();
  const out: string[] = [];
  for (const p of parts) {
    if (!r.feed(p)) continue;
    let i = r.offset;
    for (;;) {
      if (i >= r.buffer.length) {
        r.offset = i;
        break;
      }
      const end = parse(r.buffer, i);
      if (end < 0) {
        r.offset = i;
        r.waitFor(lastNeed());
        break;
      }
      out.push(r.buffer.toString("latin1", i, end));
      i = end;
    }
  }
  expect(r.atBoundary).toBe(true);
  return out;
}

const splitAt = (b: Buffer, k: number) => [b.subarray(0, k), b.subarray(k)];

describe("RESP replies", () => {
  const all = Buffer.from(REPLIES.join(""), "latin1");

  it("finds where every value ends, split at every position", () => {
    for (let k = 0; k <= all.length; k += k < 400 ? 1 : 997) expect(frames(splitAt(all, k), valueEnd), `split at ${k}`).toEqual(REPLIES);
  });

  it("byte by byte, and a big bulk string is joined once (not at every chunk)", () => {
    const bytes = [...all].map((x) => Buffer.from([x]));
    expect(frames(bytes, valueEnd)).toEqual(REPLIES);
    const big = Buffer.from(`$${1 << 20}\r\n${"y".repeat(1 << 20)}\r\n+OK\r\n`);
    const r = new RespReader();
    let joins = 0;
    for (let i = 0; i < big.length; i += 1000) if (r.feed(big.subarray(i, i + 1000))) {
      joins++;
      const end = valueEnd(r.buffer, r.offset);
      if (end < 0) r.waitFor(lastNeed());
      else r.offset = end;
    }
    expect(joins).toBeLessThan(5);
  });

  it("reads the head of a push and recognises nulls", () => {
    const push = Buffer.from(REPLIES[19]!);
    expect(headStrings(push, 0, 2)).toEqual(["message", "news"]);
    expect(isNull(Buffer.from("_\r\n"), 0)).toBe(true);
    expect(isNull(Buffer.from("*-1\r\n"), 0)).toBe(true);
    expect(isNull(Buffer.from("$-1\r\n"), 0)).toBe(true);
    expect(isNull(Buffer.from("$0\r\n\r\n"), 0)).toBe(false);
  });

  it("refuses what is not RESP", () => {
    expect(() => valueEnd(Buffer.from("?what\r\n"), 0)).toThrow(RespProtocolError);
    expect(() => valueEnd(Buffer.from("$abc\r\n"), 0)).toThrow(RespProtocolError);
    expect(() => valueEnd(Buffer.from("$3\rxabc\r\n"), 0)).toThrow(RespProtocolError);
  });
});

describe("commands", () => {
  const cmds = [encodeCommand(["SET", "k", "v"]), Buffer.from("PING\r\n"), encodeCommand(["HSET", "h", "f", Buffer.alloc(70_000, 1)]), Buffer.from("  get   k  \n"), encodeCommand(["EVAL", "return 1", "0"])];
  const all = Buffer.concat(cmds);
  const parse = (b: Buffer, at: number) => parseCommand(b, at)?.end ?? -1;

  it("reads RESP arrays and inline lines whole, split at every position", () => {
    const want = cmds.map((c) => c.toString("latin1"));
    for (let k = 0; k <= all.length; k += k < 200 ? 1 : 1013) expect(frames(splitAt(all, k), parse), `split at ${k}`).toEqual(want);
  });

  it("gives the arguments, inline ones split on blanks", () => {
    expect(parseCommand(cmds[0]!, 0)!.args.map(String)).toEqual(["SET", "k", "v"]);
    expect(parseCommand(cmds[3]!, 0)).toMatchObject({ inline: true });
    expect(parseCommand(cmds[3]!, 0)!.args.map(String)).toEqual(["get", "k"]);
    expect(() => parseCommand(Buffer.from("*1\r\n:1\r\n"), 0)).toThrow(/expected '\$'/);
  });
});

describe("what the proxy knows of commands", () => {
  const args = (...a: string[]) => a.map((x) => Buffer.from(x));
  it("refuses administration and other clients' business, allows the tenant's own", () => {
    for (const c of [["config", "get", "x"], ["monitor"], ["replicaof", "no", "one"], ["acl", "list"], ["debug", "sleep", "0"], ["shutdown"], ["client", "kill", "id", "3"], ["client", "list"], ["client", "pause", "1"]]) {
      expect(refusal(c[0]!, args(...c)), c.join(" ")).toMatch(/^NOPERM/);
    }
    for (const c of [["get", "k"], ["acl", "whoami"], ["client", "setname", "x"], ["client", "id"], ["client", "tracking", "on"]]) expect(refusal(c[0]!, args(...c)), c.join(" ")).toBeUndefined();
    expect(refusal("client", args("client", "tracking", "on", "redirect", "4"))).toMatch(/RESP3/);
    expect(refusal("client", args("client", "reply", "off"))).toMatch(/pairs every command/);
  });

  it("finds a blocking command's timeout and gives it the time it has left", () => {
    const blpop = args("BLPOP", "a", "b", "5");
    const t = blockingTimeout("blpop", blpop)!;
    expect(timeoutMs(blpop, t)).toBe(5000);
    expect(withTimeout(blpop, t, 1234).map(String)).toEqual(["BLPOP", "a", "b", "1.234"]);
    const xr = args("XREADGROUP", "GROUP", "g", "c", "BLOCK", "2000", "STREAMS", "s", ">");
    const tx = blockingTimeout("xreadgroup", xr)!;
    expect(timeoutMs(xr, tx)).toBe(2000);
    expect(withTimeout(xr, tx, 0.2).map(String)[5]).toBe("1");
    expect(blockingTimeout("xread", args("XREAD", "STREAMS", "s", "0"))).toBeUndefined();
    expect(blockingTimeout("blmpop", args("BLMPOP", "0.5", "1", "l", "LEFT"))).toEqual({ index: 1, unit: "s" });
    expect(blockingTimeout("get", args("GET", "k"))).toBeUndefined();
  });

  it("knows which commands leave state on their connection (a session that runs one leaves its lane)", () => {
    const own = (...c: string[]) => needsOwnConnection(c[0]!.toLowerCase(), args(...c));
    for (const c of [["SELECT", "1"], ["MULTI"], ["WATCH", "k"], ["WAIT", "1", "0"], ["SUBSCRIBE", "c"], ["PUNSUBSCRIBE"], ["SSUBSCRIBE", "s"], ["BLPOP", "l", "0"], ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], ["CLIENT", "SETNAME", "x"], ["CLIENT", "ID"], ["CLIENT", "TRACKING", "on"], ["READONLY"]]) {
      expect(own(...c), c.join(" ")).toBe(true);
    }
    for (const c of [["GET", "k"], ["SET", "k", "v"], ["SELECT", "0"], ["EVAL", "return 1", "0"], ["EVALSHA", "abc", "0"], ["XREAD", "STREAMS", "s", "0"], ["INCR", "n"], ["PUBLISH", "c", "m"], ["EXEC"], ["FUNCTION", "LIST"], ["CLIENT", "SETINFO", "LIB-NAME", "ioredis"]]) {
      expect(own(...c), c.join(" ")).toBe(false);
    }
    expect(setinfoAttribute(args("CLIENT", "SETINFO", "LIB-NAME", "ioredis"))).toBe("lib-name");
    expect(setinfoAttribute(args("CLIENT", "SETINFO", "lib-ver", "6.0.0"))).toBe("lib-ver");
    expect(setinfoAttribute(args("CLIENT", "SETINFO", "lib-name", "with space"))).toBeUndefined();
    expect(setinfoAttribute(args("CLIENT", "SETINFO", "other", "x"))).toBeUndefined();
    expect(setinfoAttribute(args("CLIENT", "SETNAME", "x"))).toBeUndefined();
  });
});
