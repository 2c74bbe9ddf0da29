/**
 * ResponseTracker (proxy/mysql/response.ts) on the packet sequences MariaDB sends, in both EOF
 * modes: it must say "done" at the last packet of each response and not one packet earlier.
 * (The same tracker runs against real MariaDB servers in the proxy's integration tests.)
 */
import { describe, expect, it } from "vitest";
import { CAP, COM, STATUS } from "../../proxy/mysql/codes";
import { ResponseTracker } from "../../proxy/mysql/response";
import { encodeErr, encodeOk } from "../../proxy/mysql/handshake";
import { ER } from "../../proxy/mysql/codes";
import { PayloadWriter } from "../../proxy/mysql/packets";

const BASE = CAP.PROTOCOL_41 | CAP.SECURE_CONNECTION | CAP.MULTI_RESULTS | CAP.PS_MULTI_RESULTS | CAP.SESSION_TRACK;
const ok = (status: number = STATUS.AUTOCOMMIT) => encodeOk({ status });
const eofOk = (status: number = STATUS.AUTOCOMMIT) => encodeOk({ status }, 0xfe);
const eof = (status: number = STATUS.AUTOCOMMIT) => new PayloadWriter().u8(0xfe).u16(0).u16(status).build();
const err = () => encodeErr(ER.UNKNOWN_ERROR, "boom");
const count = (n: number) => new PayloadWriter().lenenc(n).build();
const column = () => new PayloadWriter().lenencString("def").lenencString("db").lenencString("t").lenencString("t").lenencString("c").lenencString("c").u8(0x0c).zeros(12).build();
const textRow = (v: string) => new PayloadWriter().lenencString(v).build();
const prepareOk = (id: number, columns: number, params: number) => new PayloadWriter().u8(0).u32(id).u16(columns).u16(params).u8(0).u16(0).build();

/** Feed `packets` as the response to `command`; the outcome after each. */
function run(caps: number, command: number, packets: Buffer[], t = new ResponseTracker(caps)): { outcomes: string[]; t: ResponseTracker } {
  const first = t.begin(command);
  const outcomes: string[] = [first];
  for (const p of packets) {
    const kind = p.length ? p[0]! : -1;
    const body = t.wants(kind, p.length) ? p : undefined;
    outcomes.push(t.server(kind, p.length, body));
  }
  return { outcomes, t };
}
const doneAtEnd = (n: number) => [...Array.from({ length: n }, () => "more"), "done"];

for (const mode of ["with EOF packets", "with CLIENT_DEPRECATE_EOF"] as const) {
  const deprecate = mode === "with CLIENT_DEPRECATE_EOF";
  const caps = deprecate ? BASE | CAP.DEPRECATE_EOF : BASE;
  const end = (status?: number) => (deprecate ? eofOk(status) : eof(status));
  const colsEnd = deprecate ? [] : [eof()];

  describe(`responses ${mode}`, () => {
    it("an OK ends the response and sets the status flags; an ERR ends it too", () => {
      const a = run(caps, COM.QUERY, [ok(STATUS.IN_TRANS)]);
      expect(a.outcomes).toEqual(["more", "done"]);
      expect(a.t.inTransaction).toBe(true);
      const b = run(caps, COM.QUERY, [err()], a.t);
      expect(b.outcomes).toEqual(["more", "done"]);
      expect(b.t.error).toMatchObject({ code: 1105, sqlState: "HY000", message: "boom" });
      expect(b.t.inTransaction).toBe(true); // an error does not end the transaction
    });

    it("a result set: column count, definitions, rows, then its end", () => {
      const packets = [count(2), column(), column(), ...colsEnd, textRow("a"), textRow("b"), textRow("c"), end()];
      expect(run(caps, COM.QUERY, packets).outcomes).toEqual(doneAtEnd(packets.length));
    });

    it("rows that start like a terminator but are too long to be one", () => {
      const bigRow = Buffer.concat([Buffer.from([0xfe]), Buffer.alloc(deprecate ? 0xffffff : 9)]);
      const packets = [count(1), column(), ...colsEnd, bigRow, end()];
      expect(run(caps, COM.QUERY, packets).outcomes).toEqual(doneAtEnd(packets.length));
    });

    it("multiple result sets (a multi-statement or CALL): done only after the one without MORE_RESULTS", () => {
      const more = STATUS.AUTOCOMMIT | STATUS.MORE_RESULTS_EXISTS;
      const packets = [count(1), column(), ...colsEnd, textRow("1"), end(more), encodeOk({ status: more, affectedRows: 3 }), count(1), column(), ...colsEnd, end(more), ok()];
      expect(run(caps, COM.QUERY, packets).outcomes).toEqual(doneAtEnd(packets.length));
    });

    it("an error in the middle of the rows ends the response", () => {
      const packets = [count(1), column(), ...colsEnd, textRow("1"), err()];
      const r = run(caps, COM.QUERY, packets);
      expect(r.outcomes).toEqual(doneAtEnd(packets.length));
      expect(r.t.error?.message).toBe("boom");
    });

    it("never asks for the body of a row", () => {
      const t = new ResponseTracker(caps);
      t.begin(COM.QUERY);
      t.server(0x01, 1, count(1));
      t.server(0x03, column().length);
      if (!deprecate) t.server(0xfe, 5, eof());
      expect(t.wants(0x05, 100_000)).toBe(false);
      expect(t.wants(0xfe, deprecate ? 7 : 5)).toBe(true);
      expect(t.wants(0xff, 20)).toBe(true);
    });

    it("COM_STMT_PREPARE: the OK with counts, parameter then column definitions; the statement id", () => {
      const packets = [prepareOk(7, 2, 3), column(), column(), column(), ...colsEnd, column(), column(), ...colsEnd];
      const r = run(caps, COM.STMT_PREPARE, packets);
      expect(r.outcomes).toEqual(doneAtEnd(packets.length));
      expect(r.t.prepared).toEqual({ statementId: 7, columns: 2, params: 3 });
      expect(run(caps, COM.STMT_PREPARE, [prepareOk(8, 0, 0)]).outcomes).toEqual(["more", "done"]);
      expect(run(caps, COM.STMT_PREPARE, [prepareOk(9, 0, 1), column(), ...colsEnd]).outcomes).toEqual(doneAtEnd(1 + 1 + colsEnd.length));
      expect(run(caps, COM.STMT_PREPARE, [prepareOk(9, 1, 0), column(), ...colsEnd]).outcomes).toEqual(doneAtEnd(1 + 1 + colsEnd.length));
      expect(run(caps, COM.STMT_PREPARE, [err()]).outcomes).toEqual(["more", "done"]);
    });

    it("COM_STMT_EXECUTE: a binary result set; commands without a response are done at once", () => {
      const packets = [count(1), column(), ...colsEnd, Buffer.from([0x00, 0x00, 0x01]), end()];
      expect(run(caps, COM.STMT_EXECUTE, packets).outcomes).toEqual(doneAtEnd(packets.length));
      for (const c of [COM.STMT_CLOSE, COM.STMT_SEND_LONG_DATA, COM.QUIT]) expect(new ResponseTracker(caps).begin(c)).toBe("done");
    });

    it("LOAD DATA LOCAL: the request, the client's file up to its empty packet, then the OK", () => {
      const t = new ResponseTracker(caps);
      t.begin(COM.QUERY);
      expect(t.server(0xfb, 10, Buffer.from([0xfb, ...Buffer.from("/tmp/data")]))).toBe("more");
      expect(t.awaitingClientData).toBe(true);
      t.clientData(5000);
      t.clientData(0);
      expect(t.awaitingClientData).toBe(false);
      const o = ok();
      expect(t.server(0, o.length, o)).toBe("done");
    });

    it("COM_FIELD_LIST, COM_STATISTICS, COM_PING", () => {
      expect(run(caps, COM.FIELD_LIST, [column(), column(), end()]).outcomes).toEqual(doneAtEnd(3));
      expect(run(caps, COM.STATISTICS, [Buffer.from("Uptime: 5  Threads: 1")]).outcomes).toEqual(["more", "done"]);
      expect(run(caps, COM.PING, [ok()]).outcomes).toEqual(["more", "done"]);
    });

    it("refuses a command sent before the previous response ended", () => {
      const t = new ResponseTracker(caps);
      t.begin(COM.QUERY);
      expect(() => t.begin(COM.PING)).toThrow(/before the response/);
    });
  });
}
