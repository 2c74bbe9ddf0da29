/**
 * The proxy's own connection to a PostgreSQL server (it is the client here): startup, SCRAM with
 * the ClientKey recovered from the client's login, and small internal queries the proxy runs while
 * a session is parked (its state snapshot before a switch, restoring it on the new server).
 */
import * as net from "node:net";
import { AUTH, BE, FE, TX } from "./codes";
import { ALL_TYPES, FrameScanner, ProtocolError, typeSet } from "./frame-reader";
import { ScramClient, MECHANISM, type ScramVerifier } from "./scram";
import { parseErrorFields, parseParameterStatus, readCString } from "./startup";
import * as w from "./writer";
import { socketGone, type Pool, type PoolConnector } from "../pool";

export interface BackendTarget {
  host: string;
  port: number;
  database: string;
  user: string;
}

export interface BackendLogin {
  clientKey: Buffer;
  verifier: ScramVerifier;
  /** Startup parameters the client sent (application_name, client_encoding, options, …). */
  params: Record<string, string>;
  connectTimeoutMs?: number;
}

export class BackendError extends Error {
  override name = "BackendError";
  constructor(
    message: string,
    /** The server's ErrorResponse fields, when it sent one. */
    readonly fields?: Record<string, string>,
  ) {
    super(message);
  }
}

/** What forwarding mode reports to the session: ReadyForQuery and ParameterStatus. */
const FORWARD_WANTS = typeSet([BE.ReadyForQuery, BE.ParameterStatus, BE.NotificationResponse]);
/** A pooled connection also follows ParseComplete and CloseComplete (see `owed`). */
const POOLED_WANTS = typeSet([BE.ReadyForQuery, BE.ParameterStatus, BE.NotificationResponse, BE.ParseComplete, BE.CloseComplete]);

/**
 * An answer the server owes a pooled connection, in the order the messages went out. `swallow`
 * marks the answers to messages the proxy added itself (a Parse of a statement this connection has
 * not seen, a Close to make room): the client never asked, so it must not see them.
 */
export interface Owed {
  kind: "parse" | "close" | "sync";
  swallow: boolean;
  /** The server-side statement a Parse creates (forgotten if the Parse fails). */
  statement?: string;
}

export interface QueryResult {
  rows: (string | null)[][];
  error?: Record<string, string>;
}

/** Where every server connection's reads land; what is read is handled before the next read. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

type Waiter = { onFrame(type: number, body: Buffer): boolean; reject(e: Error): void };

export class Backend {
  readonly scanner = new FrameScanner(ALL_TYPES);
  readonly parameters = new Map<string, string>();
  pid = 0;
  secret = 0;
  txStatus: number = TX.Idle;
  /** Set while the proxy itself is talking to the server (startup, internal queries). */
  private waiter: Waiter | undefined;
  /** Async messages (NotificationResponse, NoticeResponse, ParameterStatus) seen during internal work. */
  onAsync: (type: number, body: Buffer) => void = () => undefined;
  /** Raw bytes in forwarding mode, plus the frames FORWARD_WANTS asks for. */
  onData: (chunk: Buffer) => void = () => undefined;
  onFrame: (type: number, body: Buffer) => void = () => undefined;
  onClose: (err?: Error) => void = () => undefined;
  private closed = false;

  // ---- pooled (transaction mode) bookkeeping; unused in session mode
  /** Named statements this server connection holds, least recently used first. */
  readonly statements = new Map<string, true>();
  /** Answers owed for what was sent (Parse, Close, Sync/Query), oldest first. */
  readonly owed: Owed[] = [];
  private swallowsOwed = 0;
  /** The start of a 5-byte ParseComplete/CloseComplete split across chunks, held back in case it is swallowed. */
  private carry: Buffer | undefined;
  /** Settings applied for the client it is lent to (startup parameters), to skip re-applying the same ones. */
  readonly applied = new Map<string, string>();
  private pooled = false;

  private constructor(
    readonly socket: net.Socket,
    readonly target: BackendTarget,
  ) {
    socket.setNoDelay(true);
    socket.on("error", (e) => this.fail(e));
    socket.on("close", () => this.fail(new BackendError(`connection to ${target.host}:${target.port} closed`)));
  }

  /** Resolved by the next read (exclusive() waiting for a message boundary). */
  private nextRead: (() => void) | undefined;

  /** Bytes read from the server: a view of READ_BUFFER, valid until this returns (whoever keeps bytes copies them). */
  data(chunk: Buffer): void {
    if (this.nextRead) {
      const r = this.nextRead;
      this.nextRead = undefined;
      queueMicrotask(r);
    }
    if (this.waiter) {
      try {
        this.scanner.scan(chunk, (type, body) => this.internalFrame(type, body));
      } catch (e) {
        this.fail(e as Error);
      }
      return;
    }
    // Scan, forward, then tell the session. Scanning first lets a NotificationResponse from this
    // very session get the pid the client knows (the proxy's BackendKeyData), patched in place,
    // as clients compare the two to skip their own notifications. The session hears of frames only
    // after the client has the bytes: what it does then (park, close at shutdown) comes after them.
    if (this.pooled) return this.pooledData(chunk);
    const seen = this.seen;
    try {
      this.scanner.scan(chunk, (type, body) => {
        if (this.note(type, body, chunk)) seen.push(type, body);
      });
    } catch (e) {
      seen.length = 0;
      this.fail(e as Error);
      return;
    }
    this.onData(chunk);
    for (let i = 0; i < seen.length; i += 2) this.onFrame(seen[i] as number, seen[i + 1] as Buffer);
    seen.length = 0;
  }

  /**
   * A pooled connection's bytes: as forwarding, minus the answers to the proxy's own messages.
   * Those are 5-byte frames; the chunk is cut around them (a frame split across chunks has its
   * start held back until it is known whether it is the client's).
   */
  private pooledData(chunk: Buffer): void {
    const seen = this.seen;
    const cuts = this.cuts;
    try {
      this.scanner.scan(chunk, (type, body, end) => {
        if (type === BE.ParseComplete || type === BE.CloseComplete) {
          const o = this.owed.shift();
          if (o?.swallow) {
            this.swallowsOwed--;
            cuts.push(end - 5, end);
          }
          return;
        }
        if (type === BE.ReadyForQuery) this.settle();
        if (this.note(type, body, chunk)) seen.push(type, body);
      });
    } catch (e) {
      seen.length = 0;
      cuts.length = 0;
      this.fail(e as Error);
      return;
    }
    let prefix = this.carry;
    this.carry = undefined;
    if (cuts.length === 0 && !prefix && this.swallowsOwed === 0) this.onData(chunk);
    else {
      let from = 0;
      for (let i = 0; i < cuts.length; i += 2) {
        const start = cuts[i]!;
        if (start < 0) prefix = undefined; // the swallowed frame began in the held-back bytes
        else {
          if (prefix) this.onData(prefix);
          prefix = undefined;
          if (start > from) this.onData(chunk.subarray(from, start));
        }
        from = cuts[i + 1]!;
      }
      let to = chunk.length;
      const t = this.scanner.partialHeaderType;
      if (this.swallowsOwed > 0 && (t === BE.ParseComplete || t === BE.CloseComplete)) {
        to = chunk.length - this.scanner.partialHeaderLength;
        if (to < from) {
          // Every byte of this chunk is part of that header: hold them all.
          this.carry = Buffer.concat([prefix ?? Buffer.alloc(0), chunk.subarray(from)]);
          prefix = undefined;
          to = from;
        } else this.carry = Buffer.from(chunk.subarray(to));
      }
      if (prefix) this.onData(prefix);
      if (to > from) this.onData(chunk.subarray(from, to));
    }
    cuts.length = 0;
    for (let i = 0; i < seen.length; i += 2) this.onFrame(seen[i] as number, seen[i + 1] as Buffer);
    seen.length = 0;
  }

  /** Offsets of the swallowed frames in the chunk being handled, as (start, end) pairs; reused. */
  private readonly cuts: number[] = [];

  /**
   * What forwarding notes of a frame it passes on: the transaction status, server parameters, and
   * in a NotificationResponse of this very session the pid the client knows (patched in place).
   * False: the session is not told of it.
   */
  private note(type: number, body: Buffer, chunk: Buffer): boolean {
    if (type === BE.ReadyForQuery) this.txStatus = body[0]!;
    else if (type === BE.ParameterStatus) {
      const p = parseParameterStatus(body);
      this.parameters.set(p.name, p.value);
    } else if (type === BE.NotificationResponse) {
      if (this.clientPid && body.buffer === chunk.buffer && body.readInt32BE(0) === this.pid) body.writeInt32BE(this.clientPid, 0);
      return false;
    }
    return true;
  }

  /** A ReadyForQuery: what the server still owed before its Sync was skipped after an error. */
  private settle(): void {
    while (this.owed.length > 0) {
      const o = this.owed.shift()!;
      if (o.kind === "sync") return;
      if (o.swallow) this.swallowsOwed--;
      if (o.kind === "parse" && o.statement) this.statements.delete(o.statement);
    }
  }

  /** Pooled mode: note an answer the server will owe for a message about to be sent. */
  owe(o: Owed): void {
    this.owed.push(o);
    if (o.swallow) this.swallowsOwed++;
  }

  /** Pooled mode from now on (a connection of a PgPool); only at a message boundary. */
  setPooled(): void {
    this.pooled = true;
    this.scanner.setWants(POOLED_WANTS);
  }

  /** Frames seen in the chunk being handled, as (type, body) pairs; reused. */
  private readonly seen: (number | Buffer)[] = [];

  /** The pid the client was given for this session (NotificationResponse rewriting). */
  clientPid = 0;

  private internalFrame(type: number, body: Buffer): void {
    if (type === BE.ParameterStatus) {
      const p = parseParameterStatus(body);
      this.parameters.set(p.name, p.value);
    }
    if (type === BE.ReadyForQuery) this.txStatus = body[0]!;
    const w = this.waiter;
    if (w && w.onFrame(type, body)) return;
    if (type === BE.NotificationResponse || type === BE.NoticeResponse || type === BE.ParameterStatus) this.onAsync(type, body);
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
    this.socket.destroy();
    this.onClose(e);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Switch the scanner to forwarding mode (only the frames the session tracks). */
  forward(): void {
    this.scanner.setWants(this.pooled ? POOLED_WANTS : FORWARD_WANTS);
  }

  /**
   * Run work that talks to the server directly. Only at a message boundary with nothing in flight
   * (the session guarantees it: it is parked); waits for a partially received async message.
   */
  private async exclusive<T>(fn: (resolve: (v: T) => void) => Waiter["onFrame"]): Promise<T> {
    if (this.closed) throw new BackendError("backend connection is closed");
    while (!this.scanner.atBoundary) await new Promise<void>((r) => (this.nextRead = r));
    this.scanner.setWants(ALL_TYPES);
    try {
      return await new Promise<T>((resolve, reject) => {
        this.waiter = { onFrame: fn(resolve), reject };
      });
    } finally {
      this.waiter = undefined;
      this.forward();
    }
  }

  /** One simple-protocol query; rows as text. An ErrorResponse is returned, not thrown. */
  query(sql: string): Promise<QueryResult> {
    return this.exclusive<QueryResult>((resolve) => {
      const result: QueryResult = { rows: [] };
      this.socket.write(w.query(sql));
      return (type, body) => {
        if (type === BE.DataRow) result.rows.push(parseDataRow(body));
        else if (type === BE.ErrorResponse) result.error = parseErrorFields(body);
        else if (type === BE.ReadyForQuery) resolve(result);
        else return type === BE.RowDescription || type === BE.CommandComplete || type === BE.EmptyQueryResponse;
        return true;
      };
    });
  }

  /**
   * Send frontend messages in one write and read every answer: each Query and each Sync ends in
   * a ReadyForQuery, so one round trip serves many independent steps. An error in a simple Query
   * does not affect the next one; in the extended protocol it skips to the next Sync, so callers
   * put a Sync after each step that must stand alone. Returns the ErrorResponses, in order.
   */
  pipeline(messages: Buffer[]): Promise<Record<string, string>[]> {
    let expected = 0;
    for (const m of messages) if (m[0] === FE.Query || m[0] === FE.Sync) expected++;
    if (expected === 0) return Promise.resolve([]);
    return this.exclusive<Record<string, string>[]>((resolve) => {
      const errors: Record<string, string>[] = [];
      this.socket.write(Buffer.concat(messages));
      return (type, body) => {
        if (type === BE.ErrorResponse) errors.push(parseErrorFields(body));
        else if (type === BE.ReadyForQuery) {
          if (--expected === 0) resolve(errors);
        } else
          return (
            type === BE.ParseComplete ||
            type === BE.CloseComplete ||
            type === BE.CommandComplete ||
            type === BE.RowDescription ||
            type === BE.DataRow ||
            type === BE.EmptyQueryResponse
          );
        return true;
      };
    });
  }

  /** Returns false when the socket's buffer is full (wait for "drain"). */
  write(data: Buffer): boolean {
    return this.closed ? true : this.socket.write(data);
  }

  /** Polite close: Terminate, then end. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end(w.terminate());
  }

  /** Resolves once the server has closed its end (its backend has gone), or after `timeoutMs`. */
  gone(timeoutMs = 2000): Promise<void> {
    return socketGone(this.socket, timeoutMs);
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  static async connect(target: BackendTarget, login: BackendLogin): Promise<Backend> {
    let b: Backend | undefined;
    // Reads go straight into one buffer shared by every server connection (no allocation per read).
    const socket = net.connect({ host: target.host, port: target.port, onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => (b!.data((buf as Buffer).subarray(0, n)), true) } });
    b = new Backend(socket, target);
    const timeout = login.connectTimeoutMs ?? 10_000;
    const timer = setTimeout(() => b.fail(new BackendError(`timed out after ${timeout} ms connecting to ${target.host}:${target.port}`)), timeout);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      await b.startup(login);
      b.forward();
      return b;
    } catch (e) {
      b.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private startup(login: BackendLogin): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let scram: ScramClient | undefined;
      this.waiter = {
        reject,
        onFrame: (type, body) => {
          try {
            if (type === BE.Authentication) {
              const code = body.readInt32BE(0);
              if (code === AUTH.SASL) {
                if (!readMechanisms(body).includes(MECHANISM)) throw new BackendError("backend does not offer SCRAM-SHA-256");
                scram = new ScramClient(login.clientKey, login.verifier);
                this.socket.write(w.saslInitialResponse(MECHANISM, scram.first()));
              } else if (code === AUTH.SASLContinue) {
                this.socket.write(w.saslResponse(scram!.final(body.toString("utf8", 4))));
              } else if (code === AUTH.SASLFinal) {
                scram!.verifyServerFinal(body.toString("utf8", 4));
              } else if (code !== AUTH.Ok) {
                throw new BackendError(`backend asks for authentication method ${code}; tenantfleet servers use SCRAM-SHA-256`);
              }
            } else if (type === BE.BackendKeyData) {
              this.pid = body.readInt32BE(0);
              this.secret = body.readInt32BE(4);
            } else if (type === BE.ErrorResponse) {
              const f = parseErrorFields(body);
              throw new BackendError(f.M ?? "backend refused the connection", f);
            } else if (type === BE.ReadyForQuery) {
              this.txStatus = body[0]!;
              this.waiter = undefined;
              resolve();
            } else if (type !== BE.ParameterStatus && type !== BE.NoticeResponse && type !== BE.NegotiateProtocolVersion) {
              throw new ProtocolError(`unexpected message 0x${type.toString(16)} during backend startup`);
            }
          } catch (e) {
            this.waiter = undefined;
            reject(e);
          }
          return true;
        },
      };
      this.socket.write(w.startupMessage({ ...login.params, user: this.target.user, database: this.target.database }));
    });
  }
}

function readMechanisms(body: Buffer): string[] {
  const out: string[] = [];
  let i = 4;
  while (i < body.length && body[i] !== 0) {
    const s = readCString(body, i);
    out.push(s.value);
    i = s.next;
  }
  return out;
}

/** A DataRow's columns, text format (NULL as null). */
export function parseDataRow(body: Buffer): (string | null)[] {
  const n = body.readInt16BE(0);
  const out: (string | null)[] = [];
  let i = 2;
  for (let c = 0; c < n; c++) {
    const len = body.readInt32BE(i);
    i += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.toString("utf8", i, i + len));
      i += len;
    }
  }
  return out;
}

/** A transaction-mode pool of PostgreSQL server connections; its info is the server's parameters at login. */
export type PgPool = Pool<Backend, Map<string, string>>;

/** How a PgPool logs in: as the tenant database's role, with the ClientKey a client proved (SCRAM). */
export function pgPoolConnector(target: BackendTarget, verifier: ScramVerifier): PoolConnector<Backend, Map<string, string>> {
  return {
    open: async (clientKey, connectTimeoutMs) => {
      const b = await Backend.connect(target, { clientKey, verifier, params: {}, connectTimeoutMs });
      b.setPooled();
      b.onClose = () => undefined;
      return b;
    },
    loginInfo: (b) => new Map(b.parameters),
    atRest: (b) => b.txStatus === TX.Idle,
  };
}
