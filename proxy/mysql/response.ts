/**
 * Where a server's response to one command ends, and the session state it leaves (the status
 * flags: in a transaction or not, autocommit), read off the packets the proxy forwards. The proxy
 * drains and switches sessions only between commands, so it must know exactly when the last
 * packet of a response has passed: after an OK or ERR, after the end of the last result set of a
 * multi-statement or CALL (SERVER_MORE_RESULTS_EXISTS), after a prepared statement's parameter
 * and column definitions, or after a LOAD DATA LOCAL exchange.
 *
 * The tracker is told each logical packet's first byte and length; it asks for the body
 * (`wants`) only of the packets it must read (OK, ERR, EOF, column counts, a prepare's OK),
 * never of rows, so a large result set is forwarded without being copied.
 */
import { CAP, COM, RESPONSE, STATUS } from "./codes";
import { MAX_PAYLOAD, MysqlProtocolError, PayloadReader } from "./packets";
import { parseErr, parseOk, type ErrPacket, type OkPacket } from "./handshake";

type State =
  | { s: "idle" }
  | { s: "first" } // the first packet of a (next) result
  | { s: "columns"; left: number; then: "rows" | "eof-then-rows" }
  | { s: "columns-eof" } // the EOF after the column definitions (without DEPRECATE_EOF)
  | { s: "rows" }
  | { s: "infile" } // the client is sending a file; the server answers after its empty packet
  | { s: "prepare-ok" } // COM_STMT_PREPARE's first packet: OK with the counts, or ERR
  /** A prepare's parameter (then column) definitions; `eof`: an EOF follows them. */
  | { s: "defs"; left: number; eof: boolean; columnsNext: number }
  | { s: "defs-eof"; columnsNext: number }
  | { s: "single" }; // one packet, whatever it is (COM_STATISTICS)

export interface Prepared {
  statementId: number;
  columns: number;
  params: number;
}

export type Outcome = "more" | "done";

export class ResponseTracker {
  private state: State = { s: "idle" };
  private readonly deprecateEof: boolean;
  /** The status flags of the last OK/EOF the server sent (at connect: autocommit, no transaction). */
  status: number = STATUS.AUTOCOMMIT;
  /** The ERR that ended the last response, if one did. */
  error: ErrPacket | undefined;
  /** The OK packets of the last response (session state changes ride on them). */
  oks: OkPacket[] = [];
  /** A COM_STMT_PREPARE's result. */
  prepared: Prepared | undefined;
  private command = -1;

  constructor(private readonly capabilities: number) {
    this.deprecateEof = (capabilities & CAP.DEPRECATE_EOF) !== 0;
  }

  get idle(): boolean {
    return this.state.s === "idle";
  }

  /** Waiting for the client's LOAD DATA LOCAL file packets. */
  get awaitingClientData(): boolean {
    return this.state.s === "infile";
  }

  get inTransaction(): boolean {
    return (this.status & STATUS.IN_TRANS) !== 0;
  }

  /** A command from the client. Returns "done" for commands the server does not answer. */
  begin(command: number): Outcome {
    if (this.state.s !== "idle") throw new MysqlProtocolError(`command 0x${command.toString(16)} sent before the response to 0x${this.command.toString(16)} ended`);
    this.command = command;
    this.error = undefined;
    this.oks = [];
    this.prepared = undefined;
    switch (command) {
      case COM.STMT_CLOSE:
      case COM.STMT_SEND_LONG_DATA:
      case COM.QUIT:
        return "done";
      case COM.STMT_PREPARE:
        this.state = { s: "prepare-ok" };
        break;
      case COM.STATISTICS:
        this.state = { s: "single" };
        break;
      case COM.FIELD_LIST: // column definitions up to an EOF: read as rows are
      case COM.STMT_FETCH:
        this.state = { s: "rows" };
        break;
      default:
        this.state = { s: "first" };
    }
    return "more";
  }

  /** Whether the body of the next server packet is needed (its first byte and length suffice otherwise). */
  wants(kind: number, length: number): boolean {
    switch (this.state.s) {
      case "rows":
        return kind === RESPONSE.ERR || this.isTerminator(kind, length);
      case "columns":
      case "defs":
      case "defs-eof":
      case "infile":
        return false;
      default:
        return true;
    }
  }

  /** One logical packet from the server: `body` when `wants` asked for it. */
  server(kind: number, length: number, body?: Buffer): Outcome {
    const st = this.state;
    const need = () => {
      if (!body) throw new MysqlProtocolError("the tracker needed this packet's body");
      return body;
    };
    switch (st.s) {
      case "idle":
        throw new MysqlProtocolError(`the server sent a packet (0x${kind.toString(16)}) outside a response`);
      case "single":
        return this.end();
      case "first": {
        if (kind === RESPONSE.ERR) return this.fail(need());
        if (kind === RESPONSE.OK && length >= 7) return this.ok(need());
        if (kind === RESPONSE.LOCAL_INFILE) {
          this.state = { s: "infile" };
          return "more";
        }
        if (kind === RESPONSE.EOF && length < 9 && this.command === COM.SET_OPTION) return this.eof(need());
        const columns = new PayloadReader(need()).lenenc();
        this.state = { s: "columns", left: columns, then: this.deprecateEof ? "rows" : "eof-then-rows" };
        return "more";
      }
      case "columns":
        if (--st.left === 0) this.state = st.then === "rows" ? { s: "rows" } : { s: "columns-eof" };
        return "more";
      case "columns-eof":
        if (kind === RESPONSE.ERR) return this.fail(need());
        this.status = new PayloadReader(need(), 3).u16();
        // A cursor opened by COM_STMT_EXECUTE: no rows now, they come with COM_STMT_FETCH.
        if (this.command === COM.STMT_EXECUTE && this.status & STATUS.CURSOR_EXISTS) return this.end();
        this.state = { s: "rows" };
        return "more";
      case "rows":
        if (kind === RESPONSE.ERR) return this.fail(need());
        if (this.isTerminator(kind, length)) return this.deprecateEof && length >= 7 ? this.ok(need()) : this.eof(need());
        return "more";
      case "infile":
        throw new MysqlProtocolError("the server sent a packet while the client was sending its LOAD DATA LOCAL file");
      case "prepare-ok": {
        if (kind === RESPONSE.ERR) return this.fail(need());
        const r = new PayloadReader(need(), 1);
        const statementId = r.u32();
        const columns = r.u16();
        const params = r.u16();
        this.prepared = { statementId, columns, params };
        return this.definitions(params, columns);
      }
      case "defs":
        if (--st.left > 0) return "more";
        if (st.eof) {
          this.state = { s: "defs-eof", columnsNext: st.columnsNext };
          return "more";
        }
        return this.definitions(st.columnsNext, 0);
      case "defs-eof":
        return this.definitions(st.columnsNext, 0);
    }
  }

  /** One packet of the client's LOAD DATA LOCAL file; the empty one ends it. */
  clientData(length: number): void {
    if (this.state.s !== "infile") throw new MysqlProtocolError("client data outside a LOAD DATA LOCAL exchange");
    if (length === 0) this.state = { s: "first" };
  }

  /** `count` definitions (each then an EOF without DEPRECATE_EOF), then `columnsNext` more. */
  private definitions(count: number, columnsNext: number): Outcome {
    if (count === 0) return columnsNext === 0 ? this.end() : this.definitions(columnsNext, 0);
    this.state = { s: "defs", left: count, eof: !this.deprecateEof, columnsNext };
    return "more";
  }

  private isTerminator(kind: number, length: number): boolean {
    return kind === RESPONSE.EOF && (this.deprecateEof ? length < MAX_PAYLOAD : length < 9);
  }

  private ok(body: Buffer): Outcome {
    const ok = parseOk(body, this.capabilities);
    this.oks.push(ok);
    this.status = ok.status;
    return this.next();
  }

  private eof(body: Buffer): Outcome {
    this.status = new PayloadReader(body, 3).u16();
    return this.next();
  }

  /** After a result: another follows when the server says so. */
  private next(): Outcome {
    if (this.status & STATUS.MORE_RESULTS_EXISTS) {
      this.state = { s: "first" };
      return "more";
    }
    return this.end();
  }

  private fail(body: Buffer): Outcome {
    this.error = parseErr(body);
    return this.end();
  }

  private end(): Outcome {
    this.state = { s: "idle" };
    return "done";
  }
}
