/**
 * One client connection through the proxy, as an explicit state machine (CONVENTIONS: the
 * drain/switch states are steps of this machine, not flags scattered through handlers).
 *
 *   startup → authenticating → waiting_route → connecting → forwarding ⇄ draining → parked
 *   parked → switching → parked;  parked | draining → forwarding (resume);  any → closed
 *
 * forwarding: bytes flow both ways untouched; the scanners only note message boundaries, the
 *   transaction status, named statements and pending Syncs.
 * draining:   a pause is on but this session has a query in flight, an open transaction or state
 *   that cannot move (temporary tables, advisory locks, WITH HOLD cursors): it keeps flowing.
 * parked:     idle at a message boundary; client messages are held, in order, until resume.
 * switching:  parked, moving to a backend on the committed route with its session state.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import type { Logger } from "pino";
import type { TenantDrain, DrainMember } from "../drain";
import type { Route } from "../catalog/routes";
import { parseClientDatabaseName, clientDatabaseName } from "../catalog/routes";
import type { TenantStats } from "../metrics";
import { Backend, BackendError, type PgPool } from "./backend";
import { BE, FE, SQLSTATE, TX } from "./codes";
import { ALL_TYPES, FrameScanner, ProtocolError, StartupReader, typeSet } from "./frame-reader";
import { decoyVerifier, MECHANISM, parseVerifier, ScramError, ScramServer } from "./scram";
import { parseClose, parseStartupPacket, parseStatementName, readCString } from "./startup";
import * as w from "./writer";
import { ident, literal, snapshotSession, restoreSession, type SessionSnapshot } from "./session-state";
import { borrow, PoolTimeoutError, type Borrower, type ServerBudget } from "../pool";
import { ClientStatements, rewriteChunk } from "./statements";

export const STEPS = ["startup", "authenticating", "waiting_route", "connecting", "forwarding", "draining", "parked", "switching", "closed"] as const;
export type Step = (typeof STEPS)[number];

/** What a session needs from the proxy around it. */
export interface SessionHost {
  log: Logger;
  tls: tls.SecureContext | undefined;
  /** The committed route of a tenant database, by its key (`<database>__<tenant>`). */
  route(key: string): Route | undefined;
  drain(key: string): TenantDrain;
  stats(key: string): TenantStats;
  /** A BackendKeyData for this session, unique across the proxy fleet. */
  register(s: PgSession): { pid: number; secret: number };
  unregister(s: PgSession): void;
  cancel(pid: number, secret: number): void;
  connectTimeoutMs: number;
  /** How long a client may take to log in (default 60 s, as PostgreSQL). */
  loginTimeoutMs?: number;
  /** The `transaction`-mode pool of a tenant database's committed route (one per route epoch). */
  pool(key: string, route: Route): PgPool;
}

/**
 * Statements that leave state in the server session, which a pooled connection would carry to the
 * next client: a session that runs one is pinned to its connection (proxy/README.md, "Pool modes").
 * SET LOCAL, SET TRANSACTION and SET CONSTRAINTS end with the transaction and are fine.
 */
const SESSION_STATE =
  /(?:^|;)\s*(?:set\s+(?!local\b|transaction\b|constraints\b)|reset\b|discard\b|listen\b|prepare\b|load\b|declare\b[^;]*\bwith\s+hold\b|create\s+(?:global\s+|local\s+)?temp(?:orary)?\b)|\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i;

/** Client message types the session looks at; CopyData and the rest pass by count only. */
const CLIENT_WANTS = typeSet([FE.Query, FE.Sync, FE.Parse, FE.Bind, FE.Describe, FE.Execute, FE.Close, FE.Flush, FE.FunctionCall, FE.Terminate]);
const EXTENDED = typeSet([FE.Parse, FE.Bind, FE.Describe, FE.Execute, FE.Close, FE.Flush]);

const NOOP = () => undefined;

/** Startup parameters that are the proxy's business, not the backend's. */
const NOT_FORWARDED = new Set(["user", "database", "replication"]);

let nextSessionNo = 0;

export class PgSession implements DrainMember, Borrower<Backend, Map<string, string>> {
  step: Step = "startup";
  readonly no = ++nextSessionNo;
  private socket: net.Socket | tls.TLSSocket;
  /** Until the startup packet is read; each field below that only login needs is dropped after it (idle sessions are most of a proxy's memory). */
  private startupReader: StartupReader | undefined = new StartupReader();
  private authScanner: FrameScanner | undefined;
  private readonly clientScanner = new FrameScanner(CLIENT_WANTS);
  /** `address:port` of the client, for the logs. */
  private readonly client: string;
  private tlsDone = false;

  // Who and where.
  tenant = "";
  database = "";
  key = "";
  user = "";
  private startupParams: Record<string, string> = {};
  private clientKey: Buffer | undefined;
  /** The epoch of the route the current backend belongs to. */
  private backendEpoch = 0;
  backend: Backend | undefined;
  pid = 0;
  secret = 0;
  private drainRef: TenantDrain | undefined;
  private stats: TenantStats | undefined;

  // Protocol bookkeeping for message boundaries.
  /** Query/Sync/FunctionCall sent and not yet answered by ReadyForQuery. */
  private pending = 0;
  /** Extended-protocol messages sent since the last Sync. */
  private unsynced = false;
  /** Named statements prepared through the protocol: their Parse messages, to re-prepare after a switch. */
  private prepared: Map<string, Buffer> | undefined;
  private unnamedParse: Buffer | undefined;

  // Drain.
  private held: Buffer[] = [];
  /** A connection to the announced switch target, opened while parked. */
  private next: { target: string; backend: Promise<Backend | undefined> } | undefined;
  /** A login to an announced switch target, opened before the pause (its state comes once parked). */
  private spare: { target: string; backend: Promise<Backend | undefined>; timer: NodeJS.Timeout } | undefined;
  private heldSince = 0;
  private pauseRequested = false;
  private unmovable = false;
  private checking = false;
  /** Announced: read the session's state once at the next idle point, ahead of the pause (see announced()). */
  private warming = false;
  snapshot: SessionSnapshot | undefined;

  // Transaction pool mode.
  /** The tenant database pools connections per transaction (`transaction` mode). */
  private pooled = false;
  /** The pool the lent connection came from. */
  private lender: PgPool | undefined;
  acquiring = false;
  /** Why this session keeps its connection for good (session state on the server), when it does. */
  pinned: string | undefined;
  /** A pinned connection's server budget (it counts there until it closes). */
  private pinnedBudget: ServerBudget | undefined;
  private readonly statements = new ClientStatements();

  constructor(
    socket: net.Socket,
    private readonly host: SessionHost,
  ) {
    this.socket = socket;
    this.client = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.setNoDelay(true);
    this.attachClient(socket);
    // As PostgreSQL's authentication_timeout: a client that never finishes logging in is dropped.
    this.loginTimer = setTimeout(() => {
      if (this.step === "startup" || this.step === "authenticating") this.fatal(SQLSTATE.QueryCanceled, "canceling authentication due to timeout");
    }, host.loginTimeoutMs ?? 60_000);
    this.loginTimer.unref();
  }

  private loginTimer: NodeJS.Timeout | undefined;

  /**
   * This session's logger, made when it logs (rarely: a pino child per idle session would cost
   * more than the session itself). Every line carries the session, the client and, once known,
   * the tenant database.
   */
  private get log(): Logger {
    return this.host.log.child(this.tenant ? { session: this.no, client: this.client, tenant: this.tenant, database: this.database } : { session: this.no, client: this.client });
  }

  private attachClient(s: net.Socket | tls.TLSSocket): void {
    s.on("data", (chunk: Buffer) => this.clientData(chunk));
    s.on("error", (e) => this.close(`client socket error: ${e.message}`));
    s.on("close", () => this.close("client closed the connection"));
  }

  // ---------------------------------------------------------------- drain member

  /** A session still waiting to open its server connection is parked too: it will open it on the committed route. */
  get parked(): boolean {
    return (this.step === "parked" && !this.checking) || this.step === "waiting_route";
  }

  get epoch(): number {
    if (this.backend) return this.backendEpoch;
    return this.host.route(this.key)?.epoch ?? 0;
  }

  get holdup(): DrainMember["holdup"] {
    if (this.parked) return undefined;
    if (this.checking) return "checking";
    if (this.unmovable) return "unmovable_state";
    if (this.backend && this.backend.txStatus !== TX.Idle) return "transaction";
    return "in_flight";
  }

  /** Idle: nothing in flight, no open transaction, at a message boundary in both directions. */
  private get idle(): boolean {
    if (!this.backend) return this.pooled && this.pending === 0 && !this.unsynced && this.clientScanner.atBoundary;
    return (
      this.pending === 0 &&
      !this.unsynced &&
      this.clientScanner.atBoundary &&
      this.backend.txStatus === TX.Idle &&
      this.backend.scanner.atBoundary
    );
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
    if (this.step === "draining") {
      this.warming = false;
      this.step = "forwarding";
      return;
    }
    // While the parking check runs, its completion sees the resume and leaves the park itself.
    if (this.step === "parked" && !this.checking) void this.leavePark();
  }

  drained(): void {
    this.prepareNext();
  }

  private shuttingDown = false;

  /** The proxy is stopping: close this session at its next idle point (now, if it is idle). */
  shutdown(): void {
    this.shuttingDown = true;
    this.closeIfShuttingDown();
  }

  private closeIfShuttingDown(): void {
    if (!this.shuttingDown || this.step === "closed") return;
    const idleHere = (this.step === "forwarding" || this.step === "draining" || (this.step === "parked" && !this.checking)) && this.idle;
    if (idleHere) this.fatal(SQLSTATE.AdminShutdown, "the proxy is shutting down", "Reconnect: another proxy serves the same address.");
  }

  routeChanged(): void {
    if (this.step === "parked" && !this.checking) void this.moveIfStale();
    else if (this.step === "draining" && this.pauseRequested && this.routeIsStale()) {
      // Rule for a route committed before this session drained (the coordinator forced it after a
      // drain timeout): its open transaction must not commit on the old server, so the session
      // ends now and the server rolls the transaction back. Nothing acknowledged is lost.
      this.fatal(SQLSTATE.AdminShutdown, `tenant database ${this.key} moved to another server while this session had a transaction or query open; it was rolled back`, "Reconnect and retry the transaction.");
    } else if (this.step === "forwarding") {
      // A route committed without a pause on this proxy (it missed it, or an operator moved
      // the route): move at the next idle point, holding this session's messages meanwhile.
      this.step = "draining";
      this.tryPark();
    }
  }

  private routeIsStale(): boolean {
    if (this.pooled && !this.backend) return false; // between transactions: the next one borrows from the committed route's pool
    const r = this.host.route(this.key);
    return !!r && r.epoch !== this.backendEpoch;
  }

  /** In `draining`, once idle: check the state can move, then park. */
  private tryPark(): void {
    if (this.step !== "draining" || !this.idle || this.checking) return;
    if (!this.pauseRequested && !this.routeIsStale() && !this.warming) {
      this.step = "forwarding";
      return;
    }
    this.warming = false;
    this.step = "parked";
    if (!this.backend) {
      // Pooled, between transactions: nothing on a server to inspect or move.
      this.unmovable = false;
      if (!this.pauseRequested) void this.leavePark();
      else this.drainRef?.check();
      return;
    }
    this.checking = true;
    const backend = this.backend;
    snapshotSession(backend)
      .then((snap) => {
        this.snapshot = snap;
        this.unmovable = snap.temporaryTables + snap.advisoryLocks + snap.holdableCursors > 0;
      })
      .catch((e: Error) => {
        this.log.warn({ err: e.message }, "could not read session state before parking; parking with what the proxy tracked");
        this.snapshot = undefined;
        this.unmovable = false;
      })
      .finally(() => {
        this.checking = false;
        if (this.step !== "parked") return;
        if (this.unmovable && this.pauseRequested) {
          // Rule: state that cannot move keeps the session running like an open transaction;
          // the drain waits for it (or times out and the coordinator decides).
          this.log.info({ snapshot: summary(this.snapshot) }, "session holds state that cannot move; keeps running while the drain waits");
          this.step = "draining";
          this.releaseHeld();
          this.drainRef?.check(); // tell the coordinator what holds the drain up
          return;
        }
        if (!this.pauseRequested) void this.leavePark();
        else {
          this.drainRef?.check();
          if (this.drainRef?.drained) this.prepareNext(); // parked after the drain was reported
          void this.moveIfStale();
        }
      });
  }

  /** Parked and the committed route moved: switch to it (stays parked). */
  private async moveIfStale(): Promise<void> {
    if (this.step !== "parked" || this.checking || !this.routeIsStale()) return;
    await this.switchBackend();
  }

  private async leavePark(): Promise<void> {
    if (this.routeIsStale()) await this.switchBackend();
    else this.dropNext(); // resumed where it was: the pause was called off (a spare login stays until its announcement lapses)
    if (this.step !== "parked") return;
    if (this.pauseRequested) return; // paused again meanwhile
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
    for (const chunk of held) {
      if (this.step === "parked" || this.step === "switching") {
        this.held.push(chunk); // re-parked while releasing: keep the rest in order
        if (!this.heldSince) this.heldSince = Date.now();
      } else this.forwardClient(chunk);
    }
  }

  /**
   * Move this parked session to a backend on the committed route, with what it set up: startup
   * parameters, SET values, prepared statements (SQL and protocol), LISTEN channels.
   */
  private async switchBackend(): Promise<void> {
    const route = this.host.route(this.key);
    const old = this.backend;
    if (!route || !old || !this.clientKey) return;
    this.step = "switching";
    const started = Date.now();
    let next: Backend | undefined;
    try {
      if (this.unmovable) throw new BackendError("session holds temporary tables, advisory locks or WITH HOLD cursors");
      const prepared = this.next;
      this.next = undefined;
      if (prepared?.target === targetKey(route)) next = await prepared.backend;
      else if (prepared) void prepared.backend.then((b) => b?.close());
      const warm = !!next && !next.isClosed;
      if (!warm) next = await this.connectWithState(route);
      const b = next!;
      if (this.pooled) {
        // A pinned session of a pooled database: its statements are the proxy's shared names,
        // prepared on demand on the new connection as on any lent one.
        b.setPooled();
        this.pinnedBudget?.give();
        this.pinnedBudget = this.host.pool(this.key, route).budgetForPinned();
      }
      // Tell the client about server parameters that differ on the new server.
      for (const [name, value] of b.parameters) {
        if (old.parameters.get(name) !== value) this.writeClient(w.parameterStatus(name, value));
      }
      old.onClose = () => undefined;
      b.clientPid = this.pid;
      this.adoptBackend(b, route.epoch);
      old.close();
      this.stats!.switches++;
      this.log.info({ epoch: route.epoch, server: route.server, ms: Date.now() - started, warm }, "session switched to the committed route");
      if (this.step !== "switching") return;
      this.step = "parked";
      if (this.routeIsStale()) return this.switchBackend(); // moved again meanwhile
      if (!this.pauseRequested) return this.leavePark();
      this.drainRef?.check();
    } catch (e) {
      next?.destroy();
      this.dropNext();
      this.stats!.switchFailures++;
      const msg = (e as Error).message;
      this.log.error({ err: msg, epoch: route.epoch }, "session could not move to the committed route; closing it");
      this.fatal(SQLSTATE.AdminShutdown, `tenant database ${this.key} moved to another server and this session could not follow: ${msg}`, "Reconnect; the new server is already serving.");
    }
  }

  // ---------------------------------------------------------------- client bytes

  private clientData(chunk: Buffer): void {
    try {
      switch (this.step) {
        case "startup":
          this.startupReader!.push(chunk);
          this.startupPackets();
          return;
        case "authenticating":
          this.authScanner!.scan(chunk, (type, body) => this.authMessage(type, body));
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
      if (e instanceof ProtocolError) this.fatal(SQLSTATE.ProtocolViolation, e.message);
      else this.fatal(SQLSTATE.InternalError, `proxy error: ${(e as Error).message}`);
    }
  }

  private hold(chunk: Buffer): void {
    if (!this.heldSince) this.heldSince = Date.now();
    this.held.push(chunk);
  }

  private forwardClient(chunk: Buffer): void {
    // A paused session that is idle parks before this message goes anywhere.
    if (this.step === "draining" && this.idle && !this.unmovable) {
      this.hold(chunk);
      this.tryPark();
      if (this.step !== "draining") return;
      this.held.pop();
    }
    if (this.pooled) return this.forwardPooled(chunk);
    const stats = this.stats!;
    stats.bytesIn += chunk.length;
    const backend = this.backend!;
    if (!backend.write(chunk)) {
      // Backpressure: stop reading the client until the server has taken what we sent.
      this.socket.pause();
      backend.socket.once("drain", () => this.socket.resume());
    }
    this.clientScanner.scan(chunk, (type, body) => {
      if (type === FE.Sync || type === FE.Query || type === FE.FunctionCall) {
        this.pending++;
        stats.queries++;
        if (type === FE.Sync) this.unsynced = false;
      } else if (EXTENDED[type]) {
        this.unsynced = true;
        if (type === FE.Parse) {
          const name = parseStatementName(body);
          const msg = w.message(FE.Parse, body); // message() copies: nothing keeps the chunk alive
          if (name === "") this.unnamedParse = msg;
          else (this.prepared ??= new Map()).set(name, msg);
        } else if (type === FE.Close) {
          const c = parseClose(body);
          if (c.kind === "S") this.prepared?.delete(c.name);
        }
      } else if (type === FE.Terminate) {
        this.close("client terminated");
      }
    });
  }

  private writeClient(data: Buffer): void {
    if (this.step !== "closed" && !this.socket.destroyed) this.socket.write(data);
  }

  // ---------------------------------------------------------------- startup and auth

  private startupPackets(): void {
    const reader = this.startupReader;
    const body = reader?.next();
    if (!body) return;
    const p = parseStartupPacket(body);
    switch (p.kind) {
      case "ssl":
        if (this.host.tls && !this.tlsDone) {
          // Bytes behind the SSLRequest came before the handshake, unencrypted: maybe a man in the
          // middle's (CVE-2021-23214). Never read them as if they came through TLS.
          if (reader!.takeRest().length > 0) {
            return this.fatal(SQLSTATE.ProtocolViolation, "received unencrypted data after SSL request", "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.");
          }
          this.socket.write("S");
          this.upgradeTls();
        } else this.socket.write("N");
        return this.startupPackets();
      case "gssenc":
        this.socket.write("N");
        return this.startupPackets();
      case "cancel":
        this.host.cancel(p.pid, p.secret);
        this.step = "closed";
        this.socket.end();
        return;
      case "unsupported":
        return this.fatal(SQLSTATE.FeatureNotSupported, `unsupported frontend protocol ${p.major}.${p.minor}: the proxy speaks 3.0`);
      case "startup": {
        // A client asking for 3.x (x > 0) or protocol options learns we speak 3.0 without them (§55.2.1).
        const options = Object.keys(p.params).filter((k) => k.startsWith("_pq_."));
        if (p.minor > 0 || options.length) this.socket.write(w.negotiateProtocolVersion(0, options));
        return this.startup(p.params);
      }
    }
  }

  private upgradeTls(): void {
    const raw = this.socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("error");
    raw.removeAllListeners("close");
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.host.tls! });
    this.socket = secure;
    this.tlsDone = true;
    this.attachClient(secure);
  }

  private startup(params: Record<string, string>): void {
    this.user = params.user ?? "";
    const dbName = params.database || this.user;
    if (params.replication && params.replication !== "false" && params.replication !== "off") {
      return this.fatal(SQLSTATE.FeatureNotSupported, "replication connections are not proxied: connect to the server directly");
    }
    if (!this.user) return this.fatal(SQLSTATE.InvalidAuthorization, "no user name in the startup packet");
    const key = parseClientDatabaseName(dbName);
    const route = key ? this.host.route(clientDatabaseName(key)) : undefined;
    if (!key || !route) {
      return this.fatal(
        SQLSTATE.InvalidCatalogName,
        `database "${dbName}" does not exist`,
        key ? "No such tenant database in the control catalog." : "Connect to <database>__<tenant>, e.g. app__acme.",
      );
    }
    if (route.engine !== "postgres") {
      return this.fatal(SQLSTATE.InvalidCatalogName, `database "${dbName}" is a ${route.engine} database, not a PostgreSQL one`, `Connect to the proxy's ${route.engine} endpoint.`);
    }
    this.tenant = key.tenant;
    this.database = key.database;
    this.key = clientDatabaseName(key);
    for (const [k, v] of Object.entries(params)) if (!NOT_FORWARDED.has(k) && !k.startsWith("_pq_.")) this.startupParams[k] = v;
    // Same messages whether or not the role exists: a wrong role is a failed login (no enumeration).
    const verifier = this.user === route.role ? parseVerifier(route.scramVerifier) : decoyVerifier();
    this.scram = new ScramServer(verifier);
    this.step = "authenticating";
    this.authScanner = new FrameScanner(ALL_TYPES, 64 * 1024);
    this.socket.write(w.authenticationSASL([MECHANISM]));
    const rest = this.startupReader!.takeRest();
    this.startupReader = undefined;
    if (rest.length) this.clientData(rest);
  }

  private scram: ScramServer | undefined;
  private scramStage: "first" | "final" = "first";

  private authMessage(type: number, body: Buffer): void {
    if (this.step !== "authenticating") return;
    if (type !== FE.Password) return this.fatal(SQLSTATE.ProtocolViolation, `expected SASL response, got message type 0x${type.toString(16)}`);
    try {
      if (this.scramStage === "first") {
        const mech = readCString(body, 0);
        if (mech.value !== MECHANISM) return this.fatal(SQLSTATE.ProtocolViolation, `SASL mechanism ${mech.value} is not offered`);
        const len = body.readInt32BE(mech.next);
        const data = body.toString("utf8", mech.next + 4, mech.next + 4 + Math.max(0, len));
        this.socket.write(w.authenticationSASLContinue(this.scram!.first(data)));
        this.scramStage = "final";
        return;
      }
      const { clientKey, serverFinal } = this.scram!.final(body.toString("utf8"));
      // Its own 32 bytes: a slice of Node's shared buffer pool would keep an 8 KiB slab alive per session.
      this.clientKey = Buffer.allocUnsafeSlow(clientKey.length);
      clientKey.copy(this.clientKey);
      this.socket.write(Buffer.concat([w.authenticationSASLFinal(serverFinal), w.authenticationOk()]));
      this.step = "waiting_route";
      clearTimeout(this.loginTimer);
      this.loginTimer = undefined;
      this.authScanner = undefined;
      this.scram = undefined;
      void this.connect();
    } catch (e) {
      if (!(e instanceof ScramError)) throw e;
      this.host.stats(this.key).authFailures++;
      this.log.warn({ user: this.user, reason: e.message }, "authentication failed");
      this.fatal(SQLSTATE.InvalidPassword, `password authentication failed for user "${this.user}"`);
    }
  }

  /**
   * A connection on `route` carrying this session's state (settings, statements, LISTENs): the
   * `opened` login when it is still open, else a new one.
   */
  private async connectWithState(route: Route, opts: { strict?: boolean } = {}, opened?: Promise<Backend | undefined>): Promise<Backend> {
    const spare = await opened;
    const b = spare && !spare.isClosed ? spare : await this.openBackend(route);
    try {
      const result = this.pooled
        ? await restoreSession(b, this.snapshot && { ...this.snapshot, protocolPrepared: [] }, new Map(), undefined)
        : await restoreSession(b, this.snapshot, this.prepared ?? new Map(), this.unnamedParse);
      // A connection opened ahead of the switch must carry everything: the target may not hold the
      // data yet (a copy still running), and the switch will connect again once it does.
      if (opts.strict && result.failures.length) throw new Error(`session state did not restore: ${result.failures.join("; ")}`);
      for (const f of result.failures) this.log.warn({ failure: f }, "session state item did not restore on the new server");
    } catch (e) {
      b.destroy();
      throw e;
    }
    return b;
  }

  /**
   * The coordinator named the switch target when it paused: open this parked session's connection
   * there now, state included, so the switch itself only swaps connections.
   */
  private prepareNext(): void {
    if (this.pooled && !this.backend) return; // between transactions: the new route's pool opens connections when needed
    const t = this.drainRef?.target;
    const route = this.host.route(this.key);
    if (!t || !route || !this.clientKey || this.unmovable || this.step !== "parked" || this.checking) return;
    const key = targetKey(t);
    if (this.next?.target === key || key === targetKey(route)) return;
    this.dropNext();
    const spare = this.spare?.target === key ? this.takeSpare() : undefined;
    const backend = this.connectWithState(routeTo(route, t), { strict: true }, spare).catch((e: Error) => {
      this.log.warn({ err: e.message }, "could not open a connection to the announced switch target; the switch will connect itself");
      return undefined;
    });
    this.next = { target: key, backend };
  }

  /**
   * The coordinator announced the next switch's target ahead of the pause: log in there now, so
   * that once parked only the state is restored (one round trip) instead of a login.
   */
  announced(t: { host: string; port: number; backendDatabase: string }, ttlMs: number): void {
    if (this.pooled && !this.backend) return; // between transactions: the new route's pool opens connections when needed
    const route = this.host.route(this.key);
    const key = targetKey(t);
    if (!route || !this.clientKey || this.step === "closed" || this.step === "waiting_route" || this.step === "connecting") return;
    if (key === targetKey(route) || this.spare?.target === key || this.next?.target === key) return;
    this.dropSpare();
    const backend = this.openBackend(routeTo(route, t)).catch((e: Error) => {
      this.log.warn({ err: e.message }, "could not log in to the announced switch target ahead of the pause; the switch will connect itself");
      return undefined;
    });
    const timer = setTimeout(() => this.dropSpare(), ttlMs);
    timer.unref();
    this.spare = { target: key, backend, timer };
    // The pause will read this session's state on its server (snapshotSession). A server session's
    // first such read loads the catalog caches of pg_settings, pg_locks and the rest: 10-30 ms
    // of the drain. Read it once now, at the next idle point (held like a park, a few ms, outside
    // the pause), and the pause's read finds the caches warm.
    if (this.step === "forwarding" && this.backend) {
      this.warming = true;
      this.step = "draining";
      this.tryPark();
    }
  }

  withdrawn(): void {
    this.dropSpare();
  }

  /** The spare login, handed over (no longer closed by dropSpare). */
  private takeSpare(): Promise<Backend | undefined> | undefined {
    const s = this.spare;
    this.spare = undefined;
    if (!s) return undefined;
    clearTimeout(s.timer);
    return s.backend;
  }

  private dropSpare(): void {
    void this.takeSpare()?.then((b) => b?.close());
  }

  private dropNext(): void {
    const n = this.next;
    this.next = undefined;
    if (n) void n.backend.then((b) => b?.close());
  }

  private async openBackend(route: Route): Promise<Backend> {
    return Backend.connect(
      { host: route.host, port: route.port, database: route.backendDatabase, user: route.role },
      { clientKey: this.clientKey!, verifier: parseVerifier(route.scramVerifier), params: this.startupParams, connectTimeoutMs: this.host.connectTimeoutMs },
    );
  }

  private adoptBackend(b: Backend, epoch: number): void {
    this.backend = b;
    this.backendEpoch = epoch;
    b.onData = (chunk) => {
      this.stats!.bytesOut += chunk.length;
      // A copy: the chunk is a view of the server connections' read buffer, which the next read overwrites.
      if (this.step !== "closed" && !this.socket.write(Buffer.from(chunk))) {
        // Backpressure: a slow client (a big COPY TO STDOUT, a huge result) pauses its server.
        b.socket.pause();
        this.socket.once("drain", () => b.socket.resume());
      }
    };
    b.onFrame = (type) => {
      if (type === BE.ReadyForQuery) {
        if (this.pending > 0) this.pending--;
        if (this.pooled && !this.pinned && this.idle) this.giveBack(true);
        if (this.shuttingDown) return this.closeIfShuttingDown();
        if (this.step === "draining") this.tryPark();
        else if (this.step === "forwarding" && this.pending === 0 && this.routeIsStale()) this.routeChanged();
      }
    };
    b.onAsync = (type, body) => this.writeClient(w.message(type, body));
    b.onClose = (err) => {
      if (this.step === "closed") return;
      this.fatal(SQLSTATE.AdminShutdown, `server connection for ${this.key} closed: ${err?.message ?? "closed"}`);
    };
  }

  private async connect(): Promise<void> {
    const drain = this.host.drain(this.key);
    this.drainRef = drain;
    this.stats = this.host.stats(this.key);
    // A member from now on: a drain that starts while this session connects waits for it to park.
    drain.join(this);
    if (drain.paused) this.log.debug("tenant database paused: holding the new connection");
    while (drain.paused && this.step === "waiting_route") await drain.waitOpen();
    if (this.step === "closed") return;
    const route = this.host.route(this.key);
    if (!route) return this.fatal(SQLSTATE.InvalidCatalogName, `database "${this.key}" does not exist`);
    this.step = "connecting";
    if (route.poolMode === "transaction") return this.connectPooled(route);
    let backend: Backend;
    try {
      backend = await this.openBackend(route);
    } catch (e) {
      const f = (e as BackendError).fields;
      this.log.error({ err: (e as Error).message, server: route.server }, "could not connect to the tenant database's server");
      if (f?.C) return this.fatal(f.C, f.M ?? "server refused the connection");
      return this.fatal(SQLSTATE.CannotConnectNow, `the server of ${this.key} is not reachable: ${(e as Error).message}`);
    }
    if ((this.step as Step) === "closed") return backend.destroy();
    this.adoptBackend(backend, route.epoch);
    const key = this.host.register(this);
    this.pid = key.pid;
    this.secret = key.secret;
    backend.clientPid = key.pid;
    this.stats.connections++;
    this.stats.active++;
    const out: Buffer[] = [];
    for (const [k, v] of backend.parameters) out.push(w.parameterStatus(k, v));
    out.push(w.backendKeyData(this.pid, this.secret), w.readyForQuery(backend.txStatus));
    this.writeClient(Buffer.concat(out));
    this.step = this.pauseRequested ? "draining" : "forwarding";
    this.tryPark(); // paused while connecting: park before any held message goes out
    this.releaseHeld();
  }

  // ---------------------------------------------------------------- transaction pool mode

  /**
   * Logged in to a `transaction`-mode tenant database: no server connection of its own. The client
   * gets the server's parameters (learned by the pool's first connection) with its own startup
   * values on top, and a ReadyForQuery; each transaction then borrows a connection.
   */
  private async connectPooled(route: Route): Promise<void> {
    this.pooled = true;
    this.clientScanner.setWants(ALL_TYPES);
    const pool = this.host.pool(this.key, route);
    pool.offerCredential(this.clientKey!);
    if (!pool.info) {
      try {
        pool.release(await pool.acquire(), true);
      } catch (e) {
        return this.poolFailure(e as Error, route);
      }
    }
    if ((this.step as Step) === "closed") return;
    const key = this.host.register(this);
    this.pid = key.pid;
    this.secret = key.secret;
    this.backendEpoch = route.epoch;
    this.stats!.connections++;
    this.stats!.active++;
    const params = new Map(pool.info);
    const reported = new Map([...params.keys()].map((k) => [k.toLowerCase(), k]));
    for (const [k, v] of Object.entries(this.settings)) {
      const name = reported.get(k.toLowerCase());
      if (name) params.set(name, v);
    }
    const out: Buffer[] = [];
    for (const [k, v] of params) out.push(w.parameterStatus(k, v));
    out.push(w.backendKeyData(this.pid, this.secret), w.readyForQuery(TX.Idle));
    this.writeClient(Buffer.concat(out));
    this.step = this.pauseRequested ? "draining" : "forwarding";
    this.tryPark();
    this.releaseHeld();
  }

  /** The settings a client asked for at startup (its parameters, and `-c name=value` in `options`). */
  private clientSettings(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.startupParams)) {
      if (k === "options") Object.assign(out, parseOptions(v));
      else out[k] = v;
    }
    return out;
  }

  /** Client bytes in pooled mode: borrow a connection first; then map statement names. */
  private forwardPooled(chunk: Buffer): void {
    if (!this.backend && this.held.length === 0 && this.clientScanner.atBoundary && chunk.length === 5 && chunk[0] === FE.Terminate) {
      return this.close("client terminated"); // nothing to borrow a connection for
    }
    if (!this.backend) {
      // Lent at once with nothing held before it: this chunk goes straight on. Else it waits its turn.
      const lentNow = this.lend();
      if (!lentNow || this.held.length > 0) {
        this.hold(chunk);
        if (lentNow) this.releaseHeld();
        return;
      }
    }
    const stats = this.stats!;
    stats.bytesIn += chunk.length;
    const backend = this.backend!;
    const out: Buffer[] = [];
    let terminate = false;
    rewriteChunk(this.clientScanner, chunk, (type, body, out) => {
      if (terminate) return false;
      if (type === FE.Terminate) {
        terminate = true;
        return false;
      }
      if (type === FE.Sync || type === FE.Query || type === FE.FunctionCall) {
        this.pending++;
        stats.queries++;
        if (type === FE.Sync) this.unsynced = false;
      } else if (EXTENDED[type]) this.unsynced = true;
      if (!this.pinned && (type === FE.Query || type === FE.Parse)) {
        const sql = type === FE.Query ? readCString(body, 0).value : readCString(body, readCString(body, 0).next).value;
        const m = SESSION_STATE.exec(sql);
        if (m) this.pin(`ran "${m[0].replace(/^[;\s]+/, "").slice(0, 40)}"`);
      }
      return this.statements.rewrite(backend, type, body, out);
    }, out);
    if (out.length > 0 && !backend.write(out.length === 1 ? out[0]! : Buffer.concat(out))) {
      this.socket.pause();
      backend.socket.once("drain", () => this.socket.resume());
    }
    if (terminate) this.close("client terminated");
  }

  /**
   * Borrow a connection from the committed route's pool. True when lent at once: an idle connection
   * that already carries this client's settings (no promise: the hot path). Otherwise one comes
   * later, this client's settings applied, and what was held is sent then.
   */
  private lend(): boolean {
    if (this.backend) return true;
    if (this.acquiring) return false;
    const route = this.host.route(this.key);
    if (!route) {
      this.fatal(SQLSTATE.InvalidCatalogName, `database "${this.key}" does not exist`);
      return false;
    }
    const pool = this.host.pool(this.key, route);
    pool.offerCredential(this.clientKey!); // a pool made after a move has not seen a login yet
    return borrow(pool, this);
  }

  // Borrower (proxy/pool.ts): how this session takes a pooled connection.

  borrowState(): "closed" | "held" | "ready" {
    return this.step === "closed" ? "closed" : this.step === "parked" || this.step === "switching" ? "held" : "ready";
  }

  fitsAsIs(b: Backend): boolean {
    return this.settingsApplied(b);
  }

  async fit(b: Backend): Promise<void> {
    b.onAsync = (type, body) => this.writeClient(w.message(type, body));
    await this.applySettings(b);
  }

  take(b: Backend, pool: PgPool, later: boolean): void {
    if (later) this.lent(pool, b);
    else this.adoptLent(pool, b);
  }

  fitFailed(e: Error): void {
    const f = (e as BackendError).fields;
    this.fatal(f?.C ?? SQLSTATE.InternalError, f?.M ?? e.message);
  }

  noConnection(e: Error, pool: PgPool): void {
    this.poolFailure(e, pool.target);
  }

  poolReplaced(): void {
    if (this.lend()) this.releaseHeld(); // the route moved while waiting
  }

  /** A borrowed connection is this session's until its transaction ends: send what was held. */
  private lent(pool: PgPool, b: Backend): void {
    this.adoptLent(pool, b);
    this.releaseHeld();
  }

  private adoptLent(pool: PgPool, b: Backend): void {
    b.onAsync = (type, body) => this.writeClient(w.message(type, body));
    this.lender = pool;
    b.clientPid = this.pid;
    this.adoptBackend(b, pool.epoch);
  }

  /** This client's settings, computed once. */
  private get settings(): Record<string, string> {
    return (this.settingsCache ??= this.clientSettings());
  }
  private settingsCache: Record<string, string> | undefined;

  private settingsApplied(b: Backend): boolean {
    const want = this.settings;
    let n = 0;
    for (const k in want) {
      if (b.applied.get(k) !== want[k]) return false;
      n++;
    }
    return n === b.applied.size;
  }

  private poolFailure(e: Error, server: { host: string; port: number }): void {
    if (e instanceof PoolTimeoutError) {
      this.host.stats(this.key).poolTimeouts++;
      this.log.warn({ pool: e.pool }, "client waited too long for a pooled server connection");
      return this.fatal(SQLSTATE.TooManyConnections, e.message, `Raise the pool size of ${this.key} in the stack config, or shorten its transactions.`);
    }
    const f = (e as BackendError).fields;
    this.log.error({ err: e.message, server: `${server.host}:${server.port}` }, "could not connect to the tenant database's server");
    if (f?.C) return this.fatal(f.C, f.M ?? "server refused the connection");
    this.fatal(SQLSTATE.CannotConnectNow, `the server of ${this.key} is not reachable: ${e.message}`);
  }

  /** The client's startup settings on a borrowed connection; what another client set is reset. */
  private async applySettings(b: Backend): Promise<void> {
    const want = this.settings;
    const sql: string[] = [];
    for (const [k, v] of Object.entries(want)) if (b.applied.get(k) !== v) sql.push(`select pg_catalog.set_config(${literal(k)}, ${literal(v)}, false)`);
    for (const k of b.applied.keys()) if (!(k in want)) sql.push(`reset ${ident(k)}`);
    if (sql.length === 0) return;
    const errors = await b.pipeline(sql.map((q) => w.query(q)));
    b.applied.clear();
    if (errors.length > 0) throw new BackendError(errors[0]!.M ?? "a startup parameter was refused", errors[0]);
    for (const [k, v] of Object.entries(want)) b.applied.set(k, v);
  }

  /** Return the lent connection (after a ReadyForQuery with nothing open). */
  private giveBack(reusable: boolean): void {
    const b = this.backend;
    const pool = this.lender;
    if (!b || !pool) return;
    this.backend = undefined;
    this.lender = undefined;
    b.onData = NOOP;
    b.onFrame = NOOP;
    b.onAsync = NOOP;
    b.onClose = NOOP;
    b.clientPid = 0;
    pool.release(b, reusable);
  }

  /** Keep the lent connection for the rest of the session: it holds state the next client must not see. */
  private pin(reason: string): void {
    if (this.pinned || !this.lender) return;
    this.pinned = reason;
    this.pinnedBudget = this.lender.detach();
    this.lender = undefined;
    this.host.stats(this.key).pinned++;
    this.log.info({ reason }, "session pinned to its server connection (session state in transaction pool mode)");
  }

  // ---------------------------------------------------------------- closing

  fatal(code: string, message: string, hint?: string): void {
    if (this.step === "closed") return;
    const e: w.ErrorFields = { severity: "FATAL", code, message };
    if (hint) e.hint = hint;
    this.log.info({ code, message }, "closing session with an error");
    if (!this.socket.destroyed) this.socket.end(w.errorResponse(e));
    this.close(message);
  }

  close(reason: string): void {
    if (this.step === "closed") return;
    // Registered (it has a BackendKeyData): also a pooled session between transactions, which holds no connection.
    const wasConnected = this.pid !== 0;
    this.step = "closed";
    clearTimeout(this.loginTimer);
    this.held = [];
    this.dropNext();
    this.dropSpare();
    if (this.pooled && this.backend && !this.pinned) this.giveBack(this.idle);
    else this.backend?.close();
    this.pinnedBudget?.give();
    this.pinnedBudget = undefined;
    if (!this.socket.destroyed) this.socket.end();
    if (this.drainRef) this.drainRef.leave(this);
    if (wasConnected) {
      this.host.unregister(this);
      this.stats!.active--;
    }
    this.log.debug({ reason }, "session closed");
  }
}

const targetKey = (t: { host: string; port: number; backendDatabase: string }) => `${t.host}:${t.port}/${t.backendDatabase}`;
/** `route` pointed at an announced switch target (same login). */
const routeTo = (route: Route, t: { host: string; port: number; backendDatabase: string }): Route => ({ ...route, host: t.host, port: t.port, backendDatabase: t.backendDatabase });

/** `-c name=value` (or `--name=value`) pairs of a startup `options` string; backslash escapes a space. */
export function parseOptions(options: string): Record<string, string> {
  const words: string[] = [];
  let cur = "";
  for (let i = 0; i < options.length; i++) {
    const c = options[i]!;
    if (c === "\\" && i + 1 < options.length) cur += options[++i];
    else if (/\s/.test(c)) {
      if (cur) words.push(cur);
      cur = "";
    } else cur += c;
  }
  if (cur) words.push(cur);
  const out: Record<string, string> = {};
  for (let i = 0; i < words.length; i++) {
    let kv: string | undefined;
    if (words[i] === "-c") kv = words[++i];
    else if (words[i]!.startsWith("-c")) kv = words[i]!.slice(2);
    else if (words[i]!.startsWith("--")) kv = words[i]!.slice(2);
    const eq = kv?.indexOf("=") ?? -1;
    if (kv && eq > 0) out[kv.slice(0, eq).replace(/-/g, "_")] = kv.slice(eq + 1);
  }
  return out;
}

function summary(s: SessionSnapshot | undefined) {
  return s && { temporaryTables: s.temporaryTables, advisoryLocks: s.advisoryLocks, holdableCursors: s.holdableCursors };
}

