/**
 * `transaction` pool mode, without servers: the client messages a lent connection gets (statement
 * names mapped, Parses added where the connection lacks a statement) and the answers the client
 * gets back (the proxy's own ParseComplete/CloseComplete cut out), with the server's bytes split at
 * every position, one or two cuts per stream.
 */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { Backend, type BackendTarget } from "../../proxy/postgres/backend";
import { BE, FE } from "../../proxy/postgres/codes";
import { ALL_TYPES, FrameScanner } from "../../proxy/postgres/frame-reader";
import { ClientStatements, rewriteChunk, serverName } from "../../proxy/postgres/statements";
import { readCString } from "../../proxy/postgres/startup";
import * as w from "../../proxy/postgres/writer";

/**
 * A Backend on a socket the test drives: what the server "sends" is handed over as the proxy's
 * read buffer does (a view that the next read overwrites: scribbled over here once handled, so a
 * view kept past its read shows up as garbage).
 */
function pooledBackend(): { b: Backend; server: (chunk: Buffer) => void; sent: Buffer[] } {
  const sock = Object.assign(new EventEmitter(), {
    setNoDelay: () => undefined,
    write: (d: Buffer) => (sent.push(Buffer.from(d)), true),
    end: () => undefined,
    destroy: () => undefined,
  });
  const sent: Buffer[] = [];
  const Ctor = Backend as unknown as new (s: unknown, t: BackendTarget) => Backend;
  const b = new Ctor(sock, { host: "h", port: 1, database: "d", user: "u" });
  b.setPooled();
  const server = (chunk: Buffer) => {
    const readBuffer = Buffer.from(chunk);
    b.data(readBuffer);
    readBuffer.fill(0xee);
  };
  return { b, server, sent };
}

const parse = (name: string, sql: string) => w.message(FE.Parse, Buffer.concat([w.cstring(name), w.cstring(sql), Buffer.from([0, 0])]));
const bind = (stmt: string) => w.message(FE.Bind, Buffer.concat([w.cstring(""), w.cstring(stmt), Buffer.from([0, 0, 0, 0, 0, 0])]));
const execute = () => w.message(FE.Execute, Buffer.concat([w.cstring(""), Buffer.from([0, 0, 0, 0])]));
const close = (name: string) => w.message(FE.Close, Buffer.concat([Buffer.from("S"), w.cstring(name)]));
const frame = (type: number, body: Buffer = Buffer.alloc(0)) => w.message(type, body);
const dataRow = (v: string) => frame(BE.DataRow, Buffer.concat([Buffer.from([0, 1]), Buffer.from([0, 0, 0, v.length]), Buffer.from(v)]));

/** Messages → the frames of the rewritten stream, as [type, statement name or ""] pairs. */
function rewritten(st: ClientStatements, b: Backend, messages: Buffer[]): Array<[string, string]> {
  const out: Buffer[] = [];
  rewriteChunk(new FrameScanner(ALL_TYPES), Buffer.concat(messages), (type, body, o) => st.rewrite(b, type, body, o), out);
  const frames: Array<[string, string]> = [];
  new FrameScanner(ALL_TYPES).scan(Buffer.concat(out), (type, body) => {
    const name = type === FE.Parse ? readCString(body, 0).value : type === FE.Bind ? readCString(body, readCString(body, 0).next).value : type === FE.Close ? readCString(body, 1).value : "";
    frames.push([String.fromCharCode(type), name]);
  });
  return frames;
}

describe("statement names on a lent connection", () => {
  it("maps client names to shared server names, adds a Parse where the connection lacks it, forgets on Close", () => {
    const st = new ClientStatements();
    const c1 = pooledBackend().b;
    const q = serverName(Buffer.concat([w.cstring("select 1"), Buffer.from([0, 0])]));
    expect(rewritten(st, c1, [parse("s1", "select 1"), bind("s1"), execute(), w.sync()])).toEqual([["P", q], ["B", q], ["E", ""], ["S", ""]]);
    // Another connection: the Bind gets its Parse first (answer owed to the proxy).
    const c2 = pooledBackend().b;
    expect(rewritten(st, c2, [bind("s1"), execute(), w.sync()])).toEqual([["P", q], ["B", q], ["E", ""], ["S", ""]]);
    expect(c2.owed.map((o) => `${o.kind}${o.swallow ? "!" : ""}`)).toEqual(["parse!", "sync"]);
    // The same statement under another name on a connection that has it: Close (ours) then Parse (the client's).
    expect(rewritten(st, c2, [parse("s2", "select 1"), w.sync()])).toEqual([["C", q], ["P", q], ["S", ""]]);
    // Close of a client name: the shared statement stays; the server still answers a CloseComplete.
    expect(rewritten(st, c2, [close("s1"), w.sync()])).toEqual([["C", "tenantfleet.none"], ["S", ""]]);
    expect(rewritten(st, c2, [bind("s1"), w.sync()])).toEqual([["B", "s1"], ["S", ""]]); // unknown now: the server says so
    // Unnamed statements pass untouched.
    expect(rewritten(st, c2, [parse("", "select 2"), bind(""), w.sync()])).toEqual([["P", ""], ["B", ""], ["S", ""]]);
  });
});

describe("client bytes on a lent connection, split anywhere", () => {
  // Untouched messages go out as views of the chunk, rewritten ones in their place: whatever the
  // chunking, the server gets the same bytes as from the whole stream in one piece.
  const stream = Buffer.concat([
    w.query("select 1"),
    parse("s1", "select $1"),
    bind("s1"),
    execute(),
    w.sync(),
    parse("", "select 2"),
    bind(""),
    execute(),
    w.sync(),
    bind("s1"),
    execute(),
    close("s1"),
    w.sync(),
    w.query("select 3"),
  ]);
  const send = (chunks: Buffer[]): Buffer => {
    const st = new ClientStatements();
    const { b } = pooledBackend();
    const scan = new FrameScanner(ALL_TYPES);
    const out: Buffer[] = [];
    for (const c of chunks) rewriteChunk(scan, c, (type, body, o) => st.rewrite(b, type, body, o), out);
    return Buffer.concat(out);
  };
  const whole = send([stream]);

  it("maps the statement names and keeps the rest byte for byte", () => {
    const q = serverName(Buffer.concat([w.cstring("select $1"), Buffer.from([0, 0])]));
    const frames: string[] = [];
    new FrameScanner(ALL_TYPES).scan(whole, (type, body) => frames.push(String.fromCharCode(type) + (type === FE.Bind ? readCString(body, readCString(body, 0).next).value : "")));
    expect(frames).toEqual(["Q", "P", `B${q}`, "E", "S", "P", "B", "E", "S", `B${q}`, "E", "C", "S", "Q"]);
    expect(whole.subarray(0, w.query("select 1").length)).toEqual(w.query("select 1"));
    expect(whole.subarray(whole.length - w.query("select 3").length)).toEqual(w.query("select 3"));
  });

  it("gives the same bytes with the stream cut at every position, once or twice", () => {
    for (let i = 1; i < stream.length; i++) {
      expect(send([stream.subarray(0, i), stream.subarray(i)])).toEqual(whole);
      for (let j = i + 1; j < stream.length; j += 7) expect(send([stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)])).toEqual(whole);
    }
  });
});

describe("answers to the proxy's own messages never reach the client", () => {
  // Owed, in order: our Parse, the client's Parse, the client's Sync; then our Close, the client's Sync.
  const stream = Buffer.concat([
    frame(BE.ParseComplete), // ours: cut
    frame(BE.ParseComplete),
    frame(BE.BindComplete),
    dataRow("42"),
    frame(BE.CommandComplete, w.cstring("SELECT 1")),
    frame(BE.ReadyForQuery, Buffer.from("I")),
    frame(BE.CloseComplete), // ours: cut
    frame(BE.ReadyForQuery, Buffer.from("I")),
  ]);
  const expected = Buffer.concat([stream.subarray(5, stream.length - 11), stream.subarray(stream.length - 6)]);

  function run(cuts: number[]): Buffer {
    const { b, server } = pooledBackend();
    b.owe({ kind: "parse", swallow: true, statement: "tf_a" });
    b.owe({ kind: "parse", swallow: false, statement: "tf_b" });
    b.owe({ kind: "sync", swallow: false });
    b.owe({ kind: "close", swallow: true });
    b.owe({ kind: "sync", swallow: false });
    const got: Buffer[] = [];
    b.onData = (c) => got.push(Buffer.from(c));
    let from = 0;
    for (const at of [...cuts, stream.length]) {
      if (at > from) server(stream.subarray(from, at));
      from = at;
    }
    expect(b.owed).toEqual([]);
    return Buffer.concat(got);
  }

  it("in one chunk", () => {
    expect(run([]).equals(expected)).toBe(true);
  });

  it("split at every position", () => {
    for (let i = 1; i < stream.length; i++) expect(run([i]).equals(expected), `split at ${i}`).toBe(true);
  });

  it("split at every pair of positions (frames cut three ways)", () => {
    for (let i = 1; i < stream.length; i++) for (let j = i + 1; j < stream.length; j++) expect(run([i, j]).equals(expected), `split at ${i}, ${j}`).toBe(true);
  });

  it("after an error the server skips to the Sync: answers it never sent are forgotten, and the statement with them", () => {
    const { b, server } = pooledBackend();
    b.statements.set("tf_a", true);
    b.owe({ kind: "parse", swallow: true, statement: "tf_a" });
    b.owe({ kind: "sync", swallow: false });
    const got: Buffer[] = [];
    b.onData = (c) => got.push(Buffer.from(c));
    const err = frame(BE.ErrorResponse, Buffer.concat([Buffer.from("SERROR\0C42601\0Msyntax error\0"), Buffer.from([0])]));
    server(Buffer.concat([err, frame(BE.ReadyForQuery, Buffer.from("I"))]));
    expect(Buffer.concat(got).equals(Buffer.concat([err, frame(BE.ReadyForQuery, Buffer.from("I"))]))).toBe(true);
    expect(b.owed).toEqual([]);
    expect(b.statements.has("tf_a")).toBe(false);
  });
});
