/**
 * Named prepared statements in `transaction` pool mode, as PgBouncer ≥ 1.21 does them.
 *
 * A client prepares `S_1` once and binds it for the rest of its session, but each transaction may
 * run on another server connection. So the proxy keeps, per client, the Parse message behind each
 * name, and gives every statement a server-side name from its text and parameter types
 * (`tf_<hash>`): the same statement from a thousand clients is prepared once per server
 * connection. A Bind or Describe of a statement the lent connection does not hold yet is preceded
 * by the Parse; its ParseComplete is the proxy's, not the client's, and is dropped (Backend.owed).
 * A client's Close forgets the name without closing the shared statement; a server connection
 * holds at most `STATEMENTS_PER_CONNECTION`, dropping the least recently used.
 */
import { createHash } from "node:crypto";
import type { Backend, Owed } from "./backend";
import { FE } from "./codes";
import type { FrameScanner } from "./frame-reader";
import { readCString } from "./startup";
import * as w from "./writer";

/** Statements kept per server connection (PgBouncer's max_prepared_statements default is 200). */
export const STATEMENTS_PER_CONNECTION = 200;
/** A statement name no client can use: Close of it is a no-op that still answers CloseComplete. */
const NO_STATEMENT = "tenantfleet.none";

/** What a Sync, Query or FunctionCall is owed (one shared object: nothing in it changes). */
const SYNC: Owed = Object.freeze({ kind: "sync", swallow: false });

interface ClientStatement {
  server: string;
  /** The Parse message under the server-side name. */
  parse: Buffer;
}

/** One client's statement names, and the rewriting of its messages for a lent connection. */
export class ClientStatements {
  /** Made on the first named Parse (most clients of a pooled database never send one). */
  private byName: Map<string, ClientStatement> | undefined;

  get size(): number {
    return this.byName?.size ?? 0;
  }

  /**
   * The messages to send to `b` for one client message (type + body), noting on `b` the answers
   * the server will owe. Returns true, pushing nothing, when the client's message goes as it is.
   */
  rewrite(b: Backend, type: number, body: Buffer, out: Buffer[]): boolean {
    switch (type) {
      case FE.Parse: {
        const name = readCString(body, 0);
        if (name.value === "") {
          b.owe({ kind: "parse", swallow: false });
          return true;
        }
        const rest = body.subarray(name.next);
        const server = serverName(rest);
        const parse = w.message(FE.Parse, Buffer.concat([w.cstring(server), rest]));
        (this.byName ??= new Map()).set(name.value, { server, parse });
        // The client expects a ParseComplete for its own Parse: if this connection holds the
        // statement already, close it first (that answer is ours) and parse it again.
        if (b.statements.has(server)) {
          b.statements.delete(server);
          b.owe({ kind: "close", swallow: true });
          out.push(closeStatement(server));
        }
        this.makeRoom(b, out);
        b.statements.set(server, true);
        b.owe({ kind: "parse", swallow: false, statement: server });
        out.push(parse);
        return false;
      }
      case FE.Bind: {
        const portal = readCString(body, 0);
        const stmt = readCString(body, portal.next);
        const s = stmt.value === "" ? undefined : this.byName?.get(stmt.value);
        if (!s) return true; // unnamed, or unknown: the server answers
        this.ensure(b, s, out);
        out.push(w.message(FE.Bind, Buffer.concat([body.subarray(0, portal.next), w.cstring(s.server), body.subarray(stmt.next)])));
        return false;
      }
      case FE.Describe: {
        const s = body[0] === 0x53 ? this.byName?.get(readCString(body, 1).value) : undefined;
        if (!s) return true;
        this.ensure(b, s, out);
        out.push(w.message(FE.Describe, Buffer.concat([Buffer.from("S"), w.cstring(s.server)])));
        return false;
      }
      case FE.Close: {
        b.owe({ kind: "close", swallow: false });
        if (body[0] === 0x53) {
          const name = readCString(body, 1).value;
          if (name !== "") {
            // Forget the client's name; the shared statement stays. The server still answers.
            this.byName?.delete(name);
            out.push(closeStatement(NO_STATEMENT));
            return false;
          }
        }
        return true;
      }
      case FE.Sync:
      case FE.Query:
      case FE.FunctionCall:
        b.owe(SYNC);
        return true;
      default:
        return true;
    }
  }

  /** The Parse messages of every name the client holds (a pinned session's switch re-prepares them). */
  parses(): Map<string, Buffer> {
    return new Map([...(this.byName ?? [])].map(([name, s]) => [name, s.parse]));
  }

  private ensure(b: Backend, s: ClientStatement, out: Buffer[]): void {
    if (b.statements.has(s.server)) {
      b.statements.delete(s.server); // most recently used goes last
      b.statements.set(s.server, true);
      return;
    }
    this.makeRoom(b, out);
    b.statements.set(s.server, true);
    b.owe({ kind: "parse", swallow: true, statement: s.server });
    out.push(s.parse);
  }

  private makeRoom(b: Backend, out: Buffer[]): void {
    while (b.statements.size >= STATEMENTS_PER_CONNECTION) {
      const oldest = b.statements.keys().next().value as string;
      b.statements.delete(oldest);
      b.owe({ kind: "close", swallow: true });
      out.push(closeStatement(oldest));
    }
  }
}

/**
 * One chunk of client bytes, as sent on: `handle` sees each complete message and returns true to
 * send it as it is (or pushes what goes in its place and returns false). Runs of messages sent as
 * they are go out as views of the chunk, not copies; a message that began in an earlier chunk
 * (the scanner joined its parts) is built anew.
 */
export function rewriteChunk(scanner: FrameScanner, chunk: Buffer, handle: (type: number, body: Buffer, out: Buffer[]) => boolean, out: Buffer[]): void {
  let runStart = -1;
  let runEnd = -1;
  scanner.scan(chunk, (type, body, end) => {
    const start = end - body.length - 5;
    const mark = out.length;
    if (handle(type, body, out)) {
      if (start >= 0) {
        // Whole in this chunk, right after the previous message: the run grows.
        if (runStart < 0) runStart = start;
        runEnd = end;
        return;
      }
      out.push(w.message(type, body));
    }
    if (runStart >= 0) {
      out.splice(mark, 0, chunk.subarray(runStart, runEnd));
      runStart = -1;
    }
  });
  if (runStart >= 0) out.push(chunk.subarray(runStart, runEnd));
}

/** `tf_` + a hash of the query text and parameter types (a Parse body after its name). */
export function serverName(parseRest: Buffer): string {
  return "tf_" + createHash("sha256").update(parseRest).digest("hex").slice(0, 24);
}

function closeStatement(name: string): Buffer {
  return w.message(FE.Close, Buffer.concat([Buffer.from("S"), w.cstring(name)]));
}
