/**
 * One MySQL-protocol client connection through the proxy, as an explicit state machine (the same
 * steps as the PostgreSQL session's, CONVENTIONS):
 *
 *   authenticating → waiting_route → connecting → forwarding ⇄ draining → parked
 *   parked → switching → parked;  parked | draining → forwarding (resume);  any → closed
 *
 * authenticating: the connection phase is terminated here (ClientAuth): greeting, the client's
 *   reply checked against the catalog's verifier, then the proxy logs into the server as the same
 *   user with what that reply proved (backend.ts) and answers the client with the server's OK.
 * forwarding: bytes flow both ways untouched; the scanners note command boundaries (the
 *   ResponseTracker finds where each response ends), the transaction status, prepared
 *   statements and statements that leave session state behind.
 * draining:   a pause is on but a command is in flight, a transaction is open or the session holds
 *   state that cannot move (temporary tables, named locks, user variables): it keeps flowing.
 * parked:     idle between commands; client bytes are held, in order, until resume.
 * switching:  parked, logging into the committed route's server with its session state: the
 *   session variables it SET are replayed, its prepared statements prepared again (the proxy
 *   then translates statement ids: the client keeps the ones it was given), LAST_INSERT_ID()
 *   carried over.
 */
import type * as net from "node:net";
import * as tls from "node:tls";
import type { Logger } from "pino";
import type { TenantDrain, DrainMember } from "../drain";
import type { Route } from "../catalog/routes";
import { keyString } from "../catalog/routes";
import type { TenantStats } from "../metrics";
import { ClientAuth, type MysqlLogin } from "./client-auth";
import { COM, ER, RESPONSE, STATUS, type ErrorCode } from "./codes";
import { connectMysqlBackend, MysqlBackendError, type MysqlBackend } from "./backend";
import { encodeErr, encodeErrPacket, encodeOk, errPacket, type ErrPacket, type HandshakeResponse } from "./handshake";
import { encodePacket, LogicalPacket, MysqlProtocolError, PacketScanner, type Packet } from "./packets";
import { ResponseTracker } from "./response";
import { borrow, PoolTimeoutError, type Borrower, type ServerBudget } from "../pool";
import type { MysqlClientProfile, MysqlPool, MysqlPoolInfo, PooledMysql } from "./pooled";

/** The version the proxy greets with: MariaDB's form (`5.5.5-` tells clients it is MariaDB). */
export const PROXY_SERVER_VERSION = "5.5.5-10.11.0-MariaDB-tenantfleet";

export const STEPS = ["authenticating", "waiting_route", "connecting", "forwarding", "draining", "parked", "switching", "closed"] as const;
export type Step = (typeof STEPS)[number];

/** What a MySQL session needs from the proxy around it. */
export interface MysqlSessionHost {
  log: Logger;
  tls: tls.SecureContext | undefined;
  connectTimeoutMs: number;
  loginTimeoutMs: number;
  /** The route whose login is `user`. */
  routeOfLogin(user: string): Route | undefined;
  route(key: string): Route | undefined;
  /** Whether a database of that name is in the catalog (1044 rather than 1049). */
  databaseExists(name: string): boolean;
  /** A connection id for this session, unique across the proxy fleet. */
  register(s: MysqlSession): number;
  unregister(s: MysqlSession): void;
  drain(key: string): TenantDrain;
  stats(key: string): TenantStats;
  /** The transaction-mode pool of a route, for clients of one profile. */
  pool(key: string, route: Route, profile: MysqlClientProfile): MysqlPool;
  /** A client's `KILL`: the error to answer with, or undefined for OK. */
  kill(requester: MysqlSession, id: number, what: "query" | "connection"): Promise<ErrPacket | undefined>;
}

/**
 * `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>`. Clients name a connection by the id the handshake
 * gave them, the proxy's (unique across the fleet), not the server's: the proxy answers it.
 * (`KILL QUERY ID <query id>` and `KILL USER` are the server's business and pass through.)
 */
const KILL = /^\s*kill\s+(?:(?:hard|soft)\s+)?(?:(connection|query)\s+)?(\d+)\s*;?\s*$/i;

/** Statements after which the session holds state on its server that a switch cannot carry. */
const UNMOVABLE =
  /\bcreate\s+(?:or\s+replace\s+)?temporary\s+table\b|\bget_lock\s*\(|\block\s+tables?\b|\bprepare\s+[`\w]+\s+from\b|@[a-z_$.][\w$.]*\s*:=|\bset\s+@(?!@)|\binto\s+@|\bxa\s+(?:start|begin)\b/i;
/** A statement that only sets session variables: replayed on the new server after a switch. */
const SESSION_SET = /^\s*set\s+(?!@(?!@)|transaction\b|(?:global|persist|persist_only)\b|@@global\.|statement\b|password\b|role\b|default\s+role\b)[^;]*;?\s*$/i;
/** Commands that name a prepared statement by id (payload bytes 1–4). */
const STATEMENT_COMMANDS = new Set<number>([COM.STMT_EXECUTE, COM.STMT_SEND_LONG_DATA, COM.STMT_CLOSE, COM.STMT_RESET, COM.STMT_FETCH]);
/** A statement that reads the session's last AUTO_INCREMENT id (pooled: the borrowed connection must have it). */
const INSERT_ID = /last_insert_id|@@identity/i;
/** COM_QUERY bodies longer than this are not inspected (a bulk INSERT, a LOAD of rows). */
const MAX_INSPECTED = 1 << 20;

interface PreparedStatement {
  body: Buffer;
  serverId: number;
  params: number;
  types?: Buffer;
  typesSent: boolean;
}

/** A command whose response is awaited, and what it means for the session's state. */
interface Command {
  com: number;
  /** COM_QUERY: the statement text (up to MAX_INSPECTED). */
  text?: string;
  /** COM_STMT_CLOSE: the client's id of the statement. */
  closes?: number;
  /** COM_STMT_PREPARE: its body (to prepare it again after a switch), whether its first answer
   * packet is still to come, and the id the client was given when ids are translated. */
  prepare?: { body: Buffer | undefined; awaitingOk: boolean; clientId?: number };
}

let nextSessionNo = 0;

export class MysqlSession implements DrainMember, Borrower<PooledMysql, MysqlPoolInfo> {
  step: Step = "authenticating";
  readonly no = ++nextSessionNo;
  private socket: net.Socket | tls.TLSSocket;
  private log: Logger;
  readonly connectionId: number;
  private auth: ClientAuth;
  private authScanner: PacketScanner;
  private readonly authPacket = new LogicalPacket();
  private loginTimer: NodeJS.Timeout;

  user = "";
  key = "";
  private response: HandshakeResponse | undefined;
  private passwordSha1: Buffer | undefined;
  private capabilities = 0;
  backend: MysqlBackend | undefined;
  private backendEpoch = 0;
  private drainRef: TenantDrain | undefined;
  private stats: TenantStats | undefined;

  // Command boundaries.
  private tracker = new ResponseTracker(0);
  private clientScanner: PacketScanner | undefined;
  private serverScanner: PacketScanner | undefined;
  private readonly clientPacket = new LogicalPacket();
  private readonly serverPacket = new LogicalPacket();
  private clientLen = 0;
  private serverKind = -1;
  private serverLen = 0;
  /** The command whose response is awaited, and what it means for the session's state. */
  private command: Command | undefined;

  // Session state.
  /** SET statements the client ran, in the order they last ran: replayed after a switch. */
  private readonly settings = new Set<string>();
  /**
   * Prepared statements by the id the client knows: the COM_STMT_PREPARE body (to prepare it again
   * after a switch), the id on the current server, its parameter count, the parameter types the
   * client last bound (COM_STMT_EXECUTE sends them only when they change: the server keeps them),
   * and whether the current server connection has been given them.
   */
  private readonly prepared = new Map<number, PreparedStatement>();
  /** Changes to the chunk being forwarded: [start, end, replacement] (a COM_STMT_EXECUTE given its types back). */
  private clientEdits: [number, number, Buffer][] = [];
  /** After a switch gave statements new server ids: ids are rewritten both ways from then on. */
  private translating = false;
  private nextClientStatementId = 0;
  /** The client's id of the statement the current command names (read at its first payload byte). */
  private statementId: number | undefined;
  /** The chunk being scanned (statement ids are rewritten in it before it is forwarded). */
  private clientChunk: Buffer | undefined;
  private serverChunk: Buffer | undefined;
  private lastInsertId = 0;
  private unmovableReason: string | undefined;
  /** A command the proxy answers itself (a KILL): its answer, sent in place of forwarding it. */
  private localAnswer: Promise<Buffer> | undefined;
  /** The route the current backend connection was opened on (its server). */
  private backendRoute: Route | undefined;

  // Transaction pool mode: a server connection is borrowed for each transaction (or command).
  private pooled = false;
  private lender: MysqlPool | undefined;
  /** The borrowed (or, once pinned, owned) connection; `backend` is its server link. */
  private lentConn: PooledMysql | undefined;
  acquiring = false;
  /** Why the session keeps its connection for good (state a next borrower must not see). */
  private pinned: string | undefined;
  private pinnedBudget: ServerBudget | undefined;
  /** The session's SET statements as one string: a borrowed connection with the same needs nothing replayed. */
  private settingsSig = "";
  /** COM_STMT_SEND_LONG_DATA sent: the data waits on this connection for its COM_STMT_EXECUTE. */
  private longData = false;

  // Drain.
  private held: Buffer[] = [];
  private heldSince = 0;
  private pauseRequested = false;
  private shuttingDown = false;

  constructor(
    socket: net.Socket,
    private readonly host: MysqlSessionHost,
  ) {
    this.socket = socket;
    this.log = host.log.child({ engine: "mysql", session: this.no, client: `${socket.remoteAddress}:${socket.remotePort}` });
    socket.setNoDelay(true);
    this.connectionId = host.register(this);
    this.auth = new ClientAuth({
      serverVersion: PROXY_SERVER_VERSION,
      connectionId: this.connectionId,
      login: (user) => this.loginOf(user),
      databaseExists: (name) => host.databaseExists(name),
      tls: !!host.tls,
      clientHost: socket.remoteAddress ?? "unknown",
    });
    this.authScanner = this.newAuthScanner();
    this.attachClient(socket);
    this.loginTimer = setTimeout(() => {
      if (this.step === "authenticating") this.fail(ER.HANDSHAKE, "Bad handshake: login timed out", 0);
    }, host.loginTimeoutMs);
    this.loginTimer.unref();
    this.run(this.auth.greet());
  }

  private attachClient(s: net.Socket | tls.TLSSocket): void {
    s.on("data", (chunk: Buffer) => this.clientData(chunk));
    s.on("error", (e) => this.close(`client socket error: ${e.message}`));
    s.on("close", () => this.close("client closed the connection"));
  }

  private loginOf(user: string): MysqlLogin | undefined {
    const r = this.host.routeOfLogin(user);
    return r && r.engine === "mysql" ? { verifier: r.scramVerifier, database: r.backendDatabase } : undefined;
  }

  // ---------------------------------------------------------------- drain member

  get parked(): boolean {
    return this.step === "parked" || this.step === "waiting_route";
  }

  get epoch(): number {
    if (this.backend) return this.backendEpoch;
    return this.host.route(this.key)?.epoch ?? 0;
  }

  get holdup(): DrainMember["holdup"] {
    if (this.parked) return undefined;
    if (this.unmovableReason) return "unmovable_state";
    if (this.tracker.inTransaction) return "transaction";
    return "in_flight";
  }

  pause(): void {
    this.pauseRequested = true;
    if (this.step === "forwarding") {
      this.step = "draining";
      this.tryPark();
    }
  }

  resume(): void {
    this.pauseRequested = false;
    if (this.step === "draining") this.step = "forwarding";
    else if (this.step === "parked") void this.leavePark();
  }

  routeChanged(): void {
    if (this.step === "parked") void this.moveIfStale();
    else if (this.step === "draining" && this.pauseRequested && this.routeIsStale()) {
      // The coordinator forced the switch past a drain timeout: this session's transaction must
      // not commit on the old server. Ending the connection rolls it back.
      this.fail(ER.SERVER_SHUTDOWN, `tenant database ${this.key} moved to another server while this session had a transaction or state open; it was rolled back. Reconnect and retry.`);
    } else if (this.step === "forwarding" && this.routeIsStale()) {
      this.step = "draining";
      this.tryPark();
    }
  }

  /** The proxy is stopping: close this session at its next idle point (now, if it is idle). */
  shutdown(): void {
    this.shuttingDown = true;
    this.closeIfShuttingDown();
  }

  private closeIfShuttingDown(): void {
    if (!this.shuttingDown || this.step === "closed") return;
    if (this.step === "authenticating" || this.step === "waiting_route" || this.step === "parked" || ((this.step === "forwarding" || this.step === "draining") && this.idle)) {
      this.fail(ER.SERVER_SHUTDOWN, "the proxy is shutting down; reconnect: another proxy serves the same address");
    }
  }

  /** Between commands, in both directions. */
  private get idle(): boolean {
    return !this.command && this.tracker.idle && !!this.clientScanner?.atBoundary && (this.backend ? !!this.serverScanner?.atBoundary : this.pooled);
  }

  private routeIsStale(): boolean {
    const r = this.host.route(this.key);
    return !!r && r.epoch !== this.backendEpoch;
  }

  private tryPark(): void {
    if (this.step !== "draining" || !this.idle) return;
    if (this.unmovableReason || this.tracker.inTransaction) return;
    if (!this.pauseRequested && !this.routeIsStale()) {
      this.step = "forwarding";
      return;
    }
    this.step = "parked";
    this.drainRef?.check();
    if (this.routeIsStale()) void this.moveIfStale();
    else if (!this.pauseRequested) void this.leavePark();
  }

  private async moveIfStale(): Promise<void> {
    if (this.step === "parked" && this.routeIsStale()) await this.switchBackend();
  }

  private async leavePark(): Promise<void> {
    if (this.routeIsStale()) await this.switchBackend();
    if (this.step !== "parked" || this.pauseRequested) return;
    this.step = "forwarding";
    this.releaseHeld();
  }

  private releaseHeld(): void {
    const held = this.held;
    this.held = [];
    if (this.heldSince) {
      this.stats!.heldMs += Date.now() - this.heldSince;
      this.heldSince = 0;
    }
    for (let i = 0; i < held.length; i++) {
      if (this.step !== "forwarding" && this.step !== "draining") {
        this.held.push(...held.slice(i)); // parked again while releasing: keep the rest in order
        this.heldSince = Date.now();
        return;
      }
      this.forwardClient(held[i]!);
    }
    this.closeIfShuttingDown();
  }

  /** Move this parked session to the committed route's server, with its session state. */
  private async switchBackend(): Promise<void> {
    const route = this.host.route(this.key);
    const old = this.backend;
    if (route && !old && this.pooled) {
      // Nothing borrowed: the next transaction borrows from the new route's pool.
      this.backendEpoch = route.epoch;
      return;
    }
    if (!route || !old) return;
    this.step = "switching";
    const started = Date.now();
    let next: MysqlBackend | undefined;
    try {
      next = await this.login(route);
      await this.restoreState(next);
      this.detachBackend(old);
      old.socket.destroy();
      if (this.lentConn) {
        // A pinned connection stays behind on the old server; the new one is the session's own.
        this.lentConn = undefined;
        this.pinnedBudget?.give();
        this.pinnedBudget = undefined;
      }
      this.adoptBackend(next, route);
      this.stats!.switches++;
      this.log.info({ epoch: route.epoch, server: route.server, ms: Date.now() - started, settings: this.settings.size, prepared: this.prepared.size }, "session switched to the committed route");
      if ((this.step as Step) !== "switching") return;
      this.step = "parked";
      if (this.routeIsStale()) return this.switchBackend(); // moved again meanwhile
      if (!this.pauseRequested) return this.leavePark();
      this.drainRef?.check();
    } catch (e) {
      next?.socket.destroy();
      this.stats!.switchFailures++;
      const msg = (e as Error).message;
      this.log.error({ err: msg, epoch: route.epoch }, "session could not move to the committed route; closing it");
      this.fail(ER.SERVER_SHUTDOWN, `tenant database ${this.key} moved to another server and this session could not follow (${msg}); reconnect, the new server is already serving`);
    }
  }

  /** Replay what the session set up on its old server, on `b`, before any client byte reaches it. */
  private async restoreState(b: MysqlBackend): Promise<void> {
    const statements = [...this.settings];
    if (this.lastInsertId) statements.push(`SET @@session.last_insert_id = ${this.lastInsertId}`);
    for (const sql of statements) {
      const r = await roundTrip(b, COM.QUERY, queryPayload(sql));
      if (r.error) throw new MysqlBackendError(`replaying "${sql.slice(0, 80)}" failed: ${r.error.message}`, r.error);
    }
    for (const [clientId, st] of this.prepared) {
      const r = await roundTrip(b, COM.STMT_PREPARE, st.body);
      if (r.error || !r.prepared) throw new MysqlBackendError(`preparing statement ${clientId} again failed: ${r.error?.message ?? "no statement id"}`, r.error);
      st.serverId = r.prepared.statementId;
      st.typesSent = false; // the new server has not seen this statement's parameter types
      if (st.serverId !== clientId) this.translating = true;
    }
  }

  // ---------------------------------------------------------------- client bytes

  private newAuthScanner(): PacketScanner {
    return new PacketScanner((p) => {
      const whole = this.authPacket.add(p);
      if (whole) this.run(this.auth.receive(whole, p.seq));
    });
  }

  private clientData(chunk: Buffer): void {
    try {
      switch (this.step) {
        case "authenticating":
          this.authScanner.feed(chunk);
          return;
        case "waiting_route":
        case "connecting":
        case "parked":
        case "switching":
          this.hold(chunk);
          return;
        case "forwarding":
        case "draining":
          this.forwardClient(chunk);
          return;
        case "closed":
          return;
      }
    } catch (e) {
      if (e instanceof MysqlProtocolError) this.fail(ER.UNKNOWN_COM, `protocol error: ${e.message}`);
      else this.fail(ER.UNKNOWN_ERROR, `proxy error: ${(e as Error).message}`);
    }
  }

  private hold(chunk: Buffer): void {
    if (!this.heldSince) this.heldSince = Date.now();
    this.held.push(chunk);
  }

  private forwardClient(chunk: Buffer): void {
    if (this.pooled && !this.backend) {
      if (this.clientScanner!.atBoundary && chunk.length === 5 && chunk[4] === COM.QUIT && chunk.readUIntLE(0, 3) === 1) {
        return this.close("client quit"); // nothing to borrow a connection for
      }
      if (!this.lend(chunk) || this.held.length > 0) return this.hold(chunk);
    }
    const stats = this.stats!;
    stats.bytesIn += chunk.length;
    this.clientChunk = chunk;
    this.clientScanner!.feed(chunk);
    if (this.step === "closed") return;
    if (this.clientEdits.length > 0) {
      const parts: Buffer[] = [];
      let from = 0;
      for (const [start, end, bytes] of this.clientEdits) parts.push(chunk.subarray(from, start), bytes), (from = end);
      parts.push(chunk.subarray(from));
      this.clientEdits = [];
      chunk = Buffer.concat(parts);
    }
    const local = this.localAnswer;
    if (local) {
      // Nothing else is read from the client until it has its answer (one command at a time).
      this.localAnswer = undefined;
      this.socket.pause();
      void local.then((payload) => {
        if (this.step === "closed") return;
        this.writeClient(1, payload);
        this.socket.resume();
        if (this.pooled && this.idle) this.onIdle(); // the connection borrowed for it goes back
      });
      return;
    }
    if (chunk.length > 0) this.backend!.socket.write(chunk);
    if (this.pooled && this.idle) this.onIdle(); // a command without a response (COM_STMT_CLOSE)
  }

  private clientWants(kind: number, length: number, chunk: Buffer, at: number): boolean {
    if (!this.tracker.idle) return false;
    if (STATEMENT_COMMANDS.has(kind)) this.readStatementId(chunk, at);
    return ((kind === COM.QUERY || kind === COM.STMT_EXECUTE) && length <= MAX_INSPECTED) || kind === COM.STMT_PREPARE || kind === COM.STMT_CLOSE;
  }

  /** One physical packet from the client (a command, or a LOAD DATA LOCAL file's data). */
  private clientPacketSeen(p: Packet): void {
    if (p.first) this.clientLen = 0;
    this.clientLen += p.length;
    const body = p.kept ? this.clientPacket.add(p) : undefined;
    if (p.more) return;
    if (this.tracker.awaitingClientData) {
      this.tracker.clientData(this.clientLen);
      return;
    }
    if (p.kind < 0) throw new MysqlProtocolError("an empty command packet");
    this.stats!.queries++;
    const statementId = STATEMENT_COMMANDS.has(p.kind) ? this.statementId : undefined;
    if (p.kind === COM.CHANGE_USER) {
      // Its reply answers the proxy's scramble, which the server never sent: it cannot be passed
      // on. Pools that reset sessions use COM_RESET_CONNECTION, which is.
      this.fail(ER.NOT_ALLOWED_COMMAND, "COM_CHANGE_USER is not supported through the tenantfleet proxy; open a new connection (COM_RESET_CONNECTION resets a session)");
      return;
    }
    if (p.kind === COM.STMT_EXECUTE && statementId !== undefined && body) this.executeTypes(p, body, statementId);
    const cmd: Command = { com: p.kind };
    if (p.kind === COM.QUERY && body) cmd.text = body.subarray(1).toString("utf8");
    const kill = cmd.text !== undefined ? KILL.exec(cmd.text) : null;
    if (kill) {
      // Answered here, not forwarded: only when the command is the whole chunk (a client sends a
      // command in one write); a KILL pipelined behind other commands goes to the server as it is.
      const at = p.end - p.length - 4;
      if (p.first && at === 0 && p.end === this.clientChunk?.length) {
        const what = kill[1]?.toLowerCase() === "query" ? "query" : "connection";
        this.localAnswer = this.host.kill(this, Number(kill[2]), what).then(
          (err) => (err ? encodeErrPacket(err) : encodeOk({ status: this.tracker.status & ~STATUS.SESSION_STATE_CHANGED })),
          (e: Error) => encodeErr(ER.UNKNOWN_ERROR, `KILL failed: ${e.message}`),
        );
        return;
      }
    }
    if (p.kind === COM.STMT_PREPARE) cmd.prepare = { body: body && Buffer.from(body), awaitingOk: true };
    if (p.kind === COM.STMT_CLOSE) cmd.closes = statementId;
    if (cmd.text && UNMOVABLE.test(cmd.text)) this.unmovable(`ran: ${cmd.text.slice(0, 60)}`);
    if (this.pooled) {
      if (p.kind === COM.STMT_CLOSE && !this.pinned) {
        // The statement stays prepared on the connection for the next session that prepares the
        // same text: the close is the client's business only (it has no response).
        const start = p.end - p.length - 4;
        if (!p.first || start < 0) throw new MysqlProtocolError("a COM_STMT_CLOSE split across reads");
        this.clientEdits.push([start, p.end, Buffer.alloc(0)]);
      }
      if (p.kind === COM.STMT_SEND_LONG_DATA) this.longData = true;
      else if (p.kind === COM.STMT_EXECUTE || p.kind === COM.STMT_RESET || p.kind === COM.STMT_CLOSE) this.longData = false;
      if (p.kind === COM.INIT_DB || (cmd.text && /^\s*use\s/i.test(cmd.text))) this.pin("changed the current database");
    }
    if (this.tracker.begin(p.kind) === "done") this.commandDone(cmd);
    else this.command = cmd;
  }


  /**
   * A statement command's id (payload bytes 1–4) as the client sent it, read at the command's first
   * payload byte (a command of any size: an 8 MB COM_STMT_EXECUTE ends many chunks later); rewritten
   * in the chunk to the current server's id once statements are renumbered (after a switch, and
   * always in transaction pool mode). The first five payload bytes of a command are in one chunk
   * (a client writes a command at once); when they are not, the session ends with an error rather
   * than send a wrong id.
   */
  private readStatementId(chunk: Buffer, at: number): void {
    if (at + 5 > chunk.length) {
      if (this.translating) throw new MysqlProtocolError("a statement command split across reads could not be translated");
      this.statementId = undefined;
      return;
    }
    const clientId = chunk.readUInt32LE(at + 1);
    this.statementId = clientId;
    if (!this.translating || clientId === 0xffffffff) return; // -1: MariaDB's "the last one prepared", on this connection
    const st = this.prepared.get(clientId);
    chunk.writeUInt32LE(st ? st.serverId : 0xfffffffe, at + 1); // unknown: an id no server has, so the server answers "unknown statement"
  }

  /** The first packet of a COM_STMT_PREPARE's response: once translating, give the client a fresh id. */
  private rewriteServerStatementId(p: Packet, prepare: NonNullable<Command["prepare"]>): void {
    const chunk = this.serverChunk!;
    const at = p.end - p.length;
    if (at < 0 || p.length < 5) throw new MysqlProtocolError("a prepare's answer split across reads could not be translated");
    prepare.clientId = ++this.nextClientStatementId;
    chunk.writeUInt32LE(prepare.clientId, at + 1);
  }

  /**
   * A COM_STMT_EXECUTE: note the parameter types it binds; if it binds none (new-params-bound 0:
   * "as last time") on a server connection that never had them — the statement was prepared again
   * there by a switch — send it with the client's last types, or the server refuses it (1210).
   * Layout: 0x17, id(4), flags(1), iterations(4), null bitmap ((n + 7) / 8), bound(1), [types(2n)], values.
   */
  private executeTypes(p: Packet, body: Buffer, clientId: number): void {
    const st = this.prepared.get(clientId);
    if (!st || st.params === 0) return;
    const flagAt = 10 + ((st.params + 7) >> 3);
    if (body.length <= flagAt) return; // malformed: the server says so
    if (body[flagAt] === 1) {
      st.types = Buffer.from(body.subarray(flagAt + 1, flagAt + 1 + 2 * st.params));
      st.typesSent = true;
      return;
    }
    if (st.typesSent || !st.types) return;
    const start = p.end - p.length - 4;
    if (!p.first || p.more || start < 0) {
      throw new MysqlProtocolError("a prepared statement's execution split across reads could not be given its parameter types after the move; reconnect");
    }
    const chunk = this.clientChunk!;
    const payload = Buffer.concat([chunk.subarray(start + 4, start + 4 + flagAt), Buffer.from([1]), st.types, chunk.subarray(start + 4 + flagAt + 1, p.end)]);
    this.clientEdits.push([start, p.end, encodePacket(chunk[start + 3]!, payload).bytes]);
    st.typesSent = true;
  }

  private unmovable(reason: string): void {
    if (!this.unmovableReason) this.log.info({ reason }, "session holds state that cannot move to another server; a drain waits for it");
    this.unmovableReason = reason;
    if (this.pooled) this.pin(reason);
  }

  /** A command's response has ended (or it had none): note what it left in the session. */
  private commandDone(cmd: Command): void {
    this.command = undefined;
    const ok = !this.tracker.error;
    if (cmd.com === COM.STMT_CLOSE && cmd.closes !== undefined) this.prepared.delete(cmd.closes);
    if (ok && cmd.prepare?.body && this.tracker.prepared) {
      const clientId = cmd.prepare.clientId ?? this.tracker.prepared.statementId;
      this.prepared.set(clientId, { body: cmd.prepare.body, serverId: this.tracker.prepared.statementId, params: this.tracker.prepared.params, typesSent: false });
      this.nextClientStatementId = Math.max(this.nextClientStatementId, clientId);
    }
    if (ok && cmd.text && SESSION_SET.test(cmd.text) && !UNMOVABLE.test(cmd.text)) {
      // Moved to the end when run again: replayed in the order they last took effect.
      const sql = cmd.text.trim().replace(/;\s*$/, "");
      this.settings.delete(sql);
      this.settings.add(sql);
      this.settingsSig = [...this.settings].join("\n");
    }
    if (ok && cmd.com === COM.RESET_CONNECTION) {
      this.settings.clear();
      this.settingsSig = "";
      this.prepared.clear();
      this.translating = this.pooled; // pooled: the proxy always numbers the client's statements
      this.lastInsertId = 0;
      this.unmovableReason = undefined;
    }
    for (const o of this.tracker.oks) if (o.lastInsertId) this.lastInsertId = o.lastInsertId;
    const c = this.lentConn;
    if (c) {
      // What the borrowed connection now carries, for the next session that borrows it.
      c.status = this.tracker.status;
      if (ok && cmd.com === COM.RESET_CONNECTION) {
        c.statements.clear();
        c.lastInsertId = 0;
      }
      c.settings = this.settingsSig;
      for (const o of this.tracker.oks) if (o.lastInsertId) c.lastInsertId = o.lastInsertId;
      if (ok && cmd.prepare?.body && this.tracker.prepared) {
        const text = cmd.prepare.body.toString("latin1");
        const had = c.statements.get(text);
        // The same text prepared again on this connection (by another session): one is enough.
        if (had && had.id !== this.tracker.prepared.statementId) this.closeServerStatement(had.id);
        c.statements.set(text, { id: this.tracker.prepared.statementId, params: this.tracker.prepared.params });
      }
    }
  }

  /** COM_STMT_CLOSE of a statement on the server (no response): at a command boundary only. */
  private closeServerStatement(id: number): void {
    const payload = Buffer.alloc(5);
    payload[0] = COM.STMT_CLOSE;
    payload.writeUInt32LE(id, 1);
    this.backend?.socket.write(encodePacket(0, payload).bytes);
  }

  // ---------------------------------------------------------------- server bytes

  private adoptBackend(b: MysqlBackend, route: Route): void {
    this.backend = b;
    this.backendRoute = route;
    this.backendEpoch = route.epoch;
    const status = this.tracker.status;
    this.tracker = new ResponseTracker(b.capabilities);
    this.tracker.status = status;
    this.serverScanner = new PacketScanner(
      (p) => this.serverPacketSeen(p),
      (kind, length) => this.tracker.wants(kind, length),
    );
    b.socket.on("data", (chunk: Buffer) => {
      this.stats!.bytesOut += chunk.length;
      try {
        this.serverChunk = chunk;
        this.serverScanner!.feed(chunk);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, "could not follow the server's response");
        this.socket.write(chunk);
        return this.close(`protocol error from the server: ${(e as Error).message}`);
      }
      if (this.step !== "closed" && !this.socket.write(chunk)) {
        b.socket.pause();
        this.socket.once("drain", () => b.socket.resume());
      }
      if (this.idle) this.onIdle();
    });
    if (!this.pooled) b.socket.on("error", (e) => this.log.warn({ err: e.message }, "server connection error")); // a pooled one has its own
    b.socket.on("close", () => {
      if (this.backend !== b || this.step === "closed") return;
      this.close(`server connection for ${this.key} closed`);
    });
    b.socket.resume();
  }

  private detachBackend(b: MysqlBackend): void {
    b.socket.removeAllListeners("data");
    b.socket.removeAllListeners("close");
  }

  private serverPacketSeen(p: Packet): void {
    if (p.first) {
      this.serverKind = p.kind;
      this.serverLen = 0;
    }
    this.serverLen += p.length;
    if (!this.command) throw new MysqlProtocolError(`the server sent a packet (0x${this.serverKind.toString(16)}) outside a response`);
    const prepare = this.command.prepare;
    if (p.first && prepare?.awaitingOk) {
      prepare.awaitingOk = false;
      if (this.translating && p.kind === RESPONSE.OK) {
        // The tracker reads the server's id from its copy; the client gets a fresh one.
        const id = p.payload.readUInt32LE(1);
        this.rewriteServerStatementId(p, prepare);
        const body = Buffer.from(p.payload);
        body.writeUInt32LE(id, 1);
        if (this.tracker.server(this.serverKind, p.length, body) === "done") this.commandDone(this.command);
        return;
      }
    }
    const body = p.kept ? this.serverPacket.add(p) : undefined;
    if (p.more) return;
    if (this.tracker.server(this.serverKind, this.serverLen, body) === "done") this.commandDone(this.command);
  }

  private onIdle(): void {
    if (this.lender && !this.pinned && !this.longData && (this.tracker.status & (STATUS.IN_TRANS | STATUS.CURSOR_EXISTS)) === 0) this.giveBack(true);
    if (this.shuttingDown) return this.closeIfShuttingDown();
    if (this.step === "draining") this.tryPark();
    else if (this.step === "forwarding" && this.routeIsStale()) this.routeChanged();
  }

  // ---------------------------------------------------------------- connecting

  private run(step: ReturnType<ClientAuth["greet"]>): void {
    switch (step.kind) {
      case "send":
        this.writeClient(step.seq, step.payload);
        return;
      case "tls":
        return this.upgradeTls();
      case "refuse":
        this.log.info({ reason: step.reason }, "login refused");
        this.writeClient(step.seq, step.payload);
        return this.close(step.reason, true);
      case "authenticated":
        this.user = step.user;
        this.response = step.response;
        this.passwordSha1 = step.passwordSha1;
        this.capabilities = step.response.capabilities;
        this.okSeq = step.seq;
        void this.connect();
        return;
    }
  }

  private okSeq = 2;

  private upgradeTls(): void {
    const plain = this.socket as net.Socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("close");
    plain.removeAllListeners("error");
    const secure = new tls.TLSSocket(plain, { isServer: true, secureContext: this.host.tls! });
    this.socket = secure;
    this.attachClient(secure);
    this.authScanner = this.newAuthScanner();
  }

  private async connect(): Promise<void> {
    const route = this.host.routeOfLogin(this.user);
    if (!route) return this.fail(ER.ACCESS_DENIED, `Access denied for user '${this.user}'`, this.okSeq);
    this.key = keyString(route);
    this.log = this.log.child({ tenant: route.tenant, database: route.database });
    this.stats = this.host.stats(this.key);
    this.step = "waiting_route";
    clearTimeout(this.loginTimer);
    const drain = this.host.drain(this.key);
    this.drainRef = drain;
    drain.join(this);
    while (drain.paused && this.step === "waiting_route") await drain.waitOpen();
    if ((this.step as Step) === "closed") return;
    const current = this.host.route(this.key);
    if (!current) return this.fail(ER.BAD_DB, `Unknown database '${route.backendDatabase}'`, this.okSeq);
    this.step = "connecting";
    if (current.poolMode === "transaction") return this.connectPooled(current);
    let b: MysqlBackend;
    try {
      b = await this.login(current);
    } catch (e) {
      const err = (e as MysqlBackendError).err;
      this.log.error({ err: (e as Error).message, server: current.server }, "could not log into the tenant database's server");
      if (err) return this.failRaw(encodeErrPacket(err), this.okSeq, err.message);
      return this.fail(ER.UNKNOWN_ERROR, `the server of ${this.key} is not reachable: ${(e as Error).message}`, this.okSeq);
    }
    if ((this.step as Step) === "closed") return void b.socket.destroy();
    this.stats.connections++;
    this.stats.active++;
    this.clientScanner = new PacketScanner(
      (p) => this.clientPacketSeen(p),
      (kind, length, chunk, at) => this.clientWants(kind, length, chunk, at),
    );
    this.adoptBackend(b, current);
    this.tracker.status = b.status;
    this.writeClient(this.okSeq, encodeOk({ status: b.status & ~STATUS.SESSION_STATE_CHANGED }));
    this.step = this.pauseRequested ? "draining" : "forwarding";
    this.tryPark();
    if (this.step === "forwarding" || this.step === "draining") this.releaseHeld();
  }

  private login(route: Route): Promise<MysqlBackend> {
    const r = this.response!;
    return connectMysqlBackend(
      { host: route.host, port: route.port, user: route.role, database: route.backendDatabase },
      {
        passwordSha1: this.passwordSha1!,
        clientCapabilities: this.capabilities,
        charset: r.charset,
        attributes: { ...r.attributes, _proxy: "tenantfleet", _proxy_connection_id: String(this.connectionId) },
        connectTimeoutMs: this.host.connectTimeoutMs,
      },
    );
  }

  // ---------------------------------------------------------------- transaction pool mode

  /** What the client negotiated at login: it picks the pool (fixed for the session). */
  private profile(): MysqlClientProfile {
    return (this.clientProfile ??= { capabilities: this.capabilities, charset: this.response!.charset });
  }

  private clientProfile: MysqlClientProfile | undefined;

  /**
   * Logged in to a `transaction`-mode tenant database: no server connection of its own. The client
   * gets its OK with the status the pool's first connection had at login; each transaction (or
   * command outside one) then borrows a connection of the pool for its client profile.
   */
  private async connectPooled(route: Route): Promise<void> {
    this.pooled = true;
    this.translating = true; // ids of statements are the proxy's: connections differ
    const pool = this.host.pool(this.key, route, this.profile());
    pool.offerCredential(this.passwordSha1!);
    if (!pool.info) {
      try {
        pool.release(await pool.acquire(), true);
      } catch (e) {
        return this.poolFailure(e as Error, this.okSeq);
      }
    }
    if ((this.step as Step) === "closed") return;
    const info = pool.info!;
    this.backendEpoch = route.epoch;
    this.stats!.connections++;
    this.stats!.active++;
    this.clientScanner = new PacketScanner(
      (p) => this.clientPacketSeen(p),
      (kind, length, chunk, at) => this.clientWants(kind, length, chunk, at),
    );
    this.tracker = new ResponseTracker(info.capabilities);
    this.tracker.status = info.status;
    this.writeClient(this.okSeq, encodeOk({ status: info.status & ~STATUS.SESSION_STATE_CHANGED }));
    this.step = this.pauseRequested ? "draining" : "forwarding";
    this.tryPark();
    if (this.step === "forwarding" || this.step === "draining") this.releaseHeld();
  }

  /**
   * Borrow a connection for the command in `chunk`. True when lent at once: an idle connection that
   * already fits this session (no promise: the hot path). Otherwise one comes later, made to fit,
   * and what was held is sent then.
   */
  private lend(chunk: Buffer): boolean {
    if (this.acquiring) return false;
    const route = this.host.route(this.key);
    if (!route) {
      this.fail(ER.BAD_DB, `Unknown database '${this.key}': it was removed from the catalog`);
      return false;
    }
    const pool = this.host.pool(this.key, route, this.profile());
    pool.offerCredential(this.passwordSha1!); // a pool made after a move has not seen a login yet
    this.wantsInsertId = this.lastInsertId !== 0 && chunk.length < MAX_INSPECTED && INSERT_ID.test(chunk.toString("latin1"));
    this.lendRoute = route;
    return borrow(pool, this);
  }

  // Borrower (proxy/pool.ts): how this session takes a pooled connection.

  /** The command being lent for reads LAST_INSERT_ID(): the connection must have the session's. */
  private wantsInsertId = false;
  /** The route whose pool is lending. */
  private lendRoute: Route | undefined;

  borrowState(): "closed" | "held" | "ready" {
    return this.step === "closed" ? "closed" : this.step === "parked" || this.step === "switching" ? "held" : "ready";
  }

  take(c: PooledMysql, pool: MysqlPool, later: boolean): void {
    this.adoptLent(pool, c, this.host.route(this.key) ?? this.lendRoute!);
    if (later) this.releaseHeld();
  }

  fitFailed(e: Error): void {
    this.fail(ER.UNKNOWN_ERROR, `could not give a pooled server connection this session's state: ${e.message}`);
  }

  noConnection(e: Error): void {
    this.poolFailure(e, 1);
  }

  poolReplaced(): void {
    if (this.held.length > 0 && this.lend(this.held[0]!)) this.releaseHeld(); // the route moved while waiting
  }

  /** The connection carries this session's settings and statements (and LAST_INSERT_ID, if the command reads it). */
  fitsAsIs(c: PooledMysql): boolean {
    if (c.settings !== this.settingsSig) return false;
    if (this.wantsInsertId && c.lastInsertId !== this.lastInsertId) return false;
    for (const st of this.prepared.values()) if (!c.statements.has(st.body.toString("latin1"))) return false;
    return true;
  }

  /** Make a borrowed connection fit: reset what another session set, apply this one's, prepare its statements. */
  async fit(c: PooledMysql): Promise<void> {
    const b = c.backend;
    if (c.settings !== this.settingsSig) {
      if (c.settings !== "") {
        const r = await roundTrip(b, COM.RESET_CONNECTION, Buffer.from([COM.RESET_CONNECTION]));
        if (r.error) throw new MysqlBackendError(`COM_RESET_CONNECTION failed: ${r.error.message}`, r.error);
        c.statements.clear();
        c.lastInsertId = 0;
        c.settings = "";
      }
      for (const sql of this.settings) {
        const r = await roundTrip(b, COM.QUERY, queryPayload(sql));
        if (r.error) throw new MysqlBackendError(`replaying "${sql.slice(0, 80)}" failed: ${r.error.message}`, r.error);
      }
      c.settings = this.settingsSig;
    }
    if (this.wantsInsertId && c.lastInsertId !== this.lastInsertId) {
      const r = await roundTrip(b, COM.QUERY, queryPayload(`SET @@session.last_insert_id = ${this.lastInsertId}`));
      if (r.error) throw new MysqlBackendError(`setting LAST_INSERT_ID failed: ${r.error.message}`, r.error);
      c.lastInsertId = this.lastInsertId;
    }
    for (const st of this.prepared.values()) {
      const text = st.body.toString("latin1");
      if (c.statements.has(text)) continue;
      const r = await roundTrip(b, COM.STMT_PREPARE, st.body);
      if (r.error || !r.prepared) throw new MysqlBackendError(`preparing a statement failed: ${r.error?.message ?? "no statement id"}`, r.error);
      c.statements.set(text, { id: r.prepared.statementId, params: r.prepared.params });
    }
  }

  private adoptLent(pool: MysqlPool, c: PooledMysql, route: Route): void {
    this.lender = pool;
    this.lentConn = c;
    for (const st of this.prepared.values()) {
      st.serverId = c.statements.get(st.body.toString("latin1"))!.id;
      st.typesSent = false; // another session may have bound other types to the same statement
    }
    this.adoptBackend(c.backend, { ...route, epoch: pool.epoch });
  }

  /** Return the borrowed connection (between transactions). */
  private giveBack(reusable: boolean): void {
    const c = this.lentConn;
    const pool = this.lender;
    if (!c || !pool) return;
    this.lentConn = undefined;
    this.lender = undefined;
    this.backend = undefined;
    // Left flowing: a connection at rest gets nothing from its server but a goodbye (its close is
    // the pool's to see); pausing and resuming it on every transaction costs a system call each.
    this.detachBackend(c.backend);
    c.status = this.tracker.status;
    pool.release(c, reusable);
  }

  /** Keep the borrowed connection for the rest of the session: it holds state the next borrower must not see. */
  private pin(reason: string): void {
    if (this.pinned || !this.lender) return;
    this.pinned = reason;
    this.pinnedBudget = this.lender.detach();
    this.lender = undefined;
    this.stats!.pinned++;
    this.log.info({ reason }, "session pinned to its server connection (session state in transaction pool mode)");
  }

  private poolFailure(e: Error, seq: number): void {
    if (e instanceof PoolTimeoutError) {
      this.stats!.poolTimeouts++;
      this.log.warn({ pool: e.pool }, "client waited too long for a pooled server connection");
      return this.fail(ER.CON_COUNT, `${e.message}. Raise the pool size of ${this.key} in the stack config, or shorten its transactions.`, seq);
    }
    const err = (e as MysqlBackendError).err;
    this.log.error({ err: e.message }, "could not log into the tenant database's server");
    if (err) return this.failRaw(encodeErrPacket(err), seq, err.message);
    this.fail(ER.UNKNOWN_ERROR, `the server of ${this.key} is not reachable: ${e.message}`, seq);
  }

  // ---------------------------------------------------------------- KILL

  /** Interrupt the statement this session runs, if any: `KILL QUERY` on its server, as its own login. */
  async killQuery(): Promise<void> {
    const b = this.backend;
    const route = this.backendRoute;
    if (!b || !route || this.step === "closed") return; // nothing runs on a server
    const err = await this.onSideConnection(route, `KILL QUERY ${b.connectionId}`);
    // The statement may have ended meanwhile, and its server thread with the session: nothing to kill.
    if (err && err.code !== ER.NO_SUCH_THREAD.code) throw new MysqlBackendError(err.message, err);
  }

  /** End this session as MySQL ends a killed connection. */
  killConnection(): void {
    this.fail(ER.CONNECTION_KILLED, "Connection was killed");
  }

  /** Run one statement on another proxy of the fleet as this session's login (a KILL of a session there); its error, if any. */
  async askProxy(at: { host: string; port: number }, sql: string): Promise<ErrPacket | undefined> {
    const route = this.backendRoute;
    if (!route) return errPacket(ER.UNKNOWN_ERROR, "not connected");
    return this.onSideConnection({ ...route, host: at.host, port: at.port }, sql);
  }

  /** One statement on a connection of its own to `route`'s host, logged in as this session; its error, if any. */
  private async onSideConnection(route: Route, sql: string): Promise<ErrPacket | undefined> {
    const side = await this.login(route);
    try {
      return (await roundTrip(side, COM.QUERY, queryPayload(sql))).error;
    } finally {
      side.socket.destroy();
    }
  }

  // ---------------------------------------------------------------- writing and closing

  private writeClient(seq: number, payload: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(encodePacket(seq, payload).bytes);
  }

  /** Send an ERR (in the login: with the login's next sequence id; later: as a response, id 1) and close. */
  fail(e: ErrorCode, message: string, seq = 1): void {
    this.failRaw(encodeErr(e, message), seq, message);
  }

  private failRaw(payload: Buffer, seq: number, reason: string): void {
    if (this.step === "closed") return;
    this.log.info({ reason }, "closing session with an error");
    if (!this.socket.destroyed) this.socket.end(encodePacket(seq, payload).bytes);
    this.close(reason, true);
  }

  close(reason: string, ended = false): void {
    if (this.step === "closed") return;
    const wasConnected = !!this.backend || (this.pooled && !!this.clientScanner);
    this.step = "closed";
    clearTimeout(this.loginTimer);
    this.held = [];
    if (this.lender && this.lentConn) {
      this.giveBack(this.idle);
    } else if (this.backend) {
      this.detachBackend(this.backend);
      this.backend.socket.destroy();
      this.pinnedBudget?.give();
    }
    if (!ended && !this.socket.destroyed) this.socket.end();
    this.drainRef?.leave(this);
    this.host.unregister(this);
    if (wasConnected) this.stats!.active--;
    this.log.debug({ reason }, "session closed");
  }
}

/** One command on a connection the client does not see yet; resolves at the end of its response. */
function roundTrip(b: MysqlBackend, com: number, payload: Buffer): Promise<ResponseTracker> {
  return new Promise((resolve, reject) => {
    const tracker = new ResponseTracker(b.capabilities);
    const logical = new LogicalPacket();
    let kind = -1;
    let len = 0;
    const cleanup = () => {
      b.socket.removeListener("data", onData);
      b.socket.removeListener("close", onClose);
      b.socket.pause();
    };
    const scanner = new PacketScanner(
      (p) => {
        if (p.first) {
          kind = p.kind;
          len = 0;
        }
        len += p.length;
        const body = logical.add(p);
        if (p.more) return;
        if (tracker.server(kind, len, body) === "done") {
          cleanup();
          resolve(tracker);
        }
      },
      () => true,
    );
    const onData = (chunk: Buffer) => {
      try {
        scanner.feed(chunk);
      } catch (e) {
        cleanup();
        reject(e);
      }
    };
    const onClose = () => {
      cleanup();
      reject(new MysqlBackendError("the server closed the connection"));
    };
    b.socket.on("data", onData);
    b.socket.on("close", onClose);
    const answered = tracker.begin(com) === "more";
    b.socket.write(encodePacket(0, payload).bytes);
    if (answered) return void b.socket.resume();
    cleanup();
    resolve(tracker);
  });
}

/** A COM_QUERY's payload. */
function queryPayload(sql: string): Buffer {
  return Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(sql, "utf8")]);
}
