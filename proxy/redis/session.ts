/**
 * One Redis client connection through the proxy (RESP2 and RESP3).
 *
 * The client logs in to the proxy (`AUTH user pass`, or `HELLO 3 AUTH user pass`), which checks
 * the password against the verifier of the route whose login is `user` (the SHA-256 Redis's ACL
 * stores, `#<hex>`), then opens the session's own connection to the tenant database's instance
 * as that user. Every command is read whole and paired with its reply (pub/sub confirmations
 * and pushes counted apart), so the session always knows whether anything is in flight: a
 * pause holds commands between replies, a switch happens with nothing pending, and replies the
 * proxy writes itself (refusals) keep their place in a pipeline.
 *
 * Connections to the instance: a session's commands ride a lane (lane.ts), a server connection
 * that the sessions of the tenant database share, while they leave no state on the connection.
 * The first command that would (SELECT of another db, MULTI, WATCH, a subscription, a blocking
 * command, CLIENT SETNAME/TRACKING/ID/…, HELLO or RESET after the login) waits until the session's
 * commands on the lane are answered, and the session gets a connection of its own, logged in with
 * the session's state, for the rest of its life. CLIENT SETINFO rides the lane, and what the
 * instance accepted is given to that connection. `--redis-multiplex off` gives every session its own connection from the login.
 *
 * Session state a switch carries to the new instance: RESP version, SELECTed db, client name,
 * client tracking (with an invalidation of everything, so client caches flush), subscriptions
 * (re-subscribed before anything held is released), scripts the session loaded (so EVALSHA
 * never gets NOSCRIPT), a blocked command (released on the old instance, issued again on the
 * new one with the time it has left). A WATCH that spans a switch makes the next EXEC return
 * null, as a touched key would: a legal abort, not an error. An open MULTI finishes first.
 */
import * as net from "node:net";
import { createHash, timingSafeEqual } from "node:crypto";
import type { Logger } from "pino";
import type { Route } from "../catalog/routes";
import { keyString } from "../catalog/routes";
import type { DrainMember, TenantDrain } from "../drain";
import type { TenantStats } from "../metrics";
import {
  INVALIDATE_ALL,
  OK,
  RespProtocolError,
  RespReader,
  encodeCommand,
  errorReply,
  errorText,
  headStrings,
  isNull,
  lastNeed,
  nullReply,
  parseCommand,
  valueEnd,
} from "./resp";
import { CONFIRMATIONS, PUBSUB, PUSH_KINDS, blockingTimeout, needsOwnConnection, refusal, setinfoAttribute, sub, timeoutMs, withTimeout, type BlockingTimeout, type SubscribeKind } from "./commands";
import type { Lane, LaneRider, LaneTarget } from "./lane";

export interface RedisSessionHost {
  log: Logger;
  connectTimeoutMs: number;
  loginTimeoutMs: number;
  /** The route whose login is `user`. */
  routeOfLogin(user: string): Route | undefined;
  route(key: string): Route | undefined;
  drain(key: string): TenantDrain;
  stats(key: string): TenantStats;
  register(s: RedisSession): void;
  unregister(s: RedisSession): void;
  /** Sessions share lanes until one needs a connection of its own (off: a connection per session). */
  multiplex: boolean;
  /** The lane of tenant database `key` to `t` (made when there is none, or it broke). */
  lane(key: string, t: LaneTarget): Lane;
}

const WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled.";

type Step = "authenticating" | "connecting" | "forwarding" | "draining" | "parked" | "switching" | "pinning" | "closed";

/** A command sent to the instance whose reply is awaited. */
interface Pending {
  /** Replies still to come (pub/sub commands get one confirmation per channel). */
  replies: number;
  /** The proxy's own command: its reply is not the client's. */
  swallow?: boolean;
  /** Pub/sub family: replies are its confirmations. */
  pubsub?: SubscribeKind;
  /** Called with each reply (before it is written). */
  onReply?: (b: Buffer, at: number, end: number) => void;
  /** A reply the proxy answers in the command's place (a refusal), written when its turn comes. */
  local?: Buffer;
  /** A blocking command: its arguments, where its timeout is, and when it ends (0: never). */
  blocking?: { args: Buffer[]; timeout: BlockingTimeout; deadline: number; released?: boolean };
}

class Backend {
  readonly reader: RespReader;
  clientId = 0;
  /** `from`: a standby logged in before the route was committed, taken over with its bytes read so far. */
  constructor(
    readonly socket: net.Socket,
    readonly epoch: number,
    readonly route: Route,
    from?: Backend,
  ) {
    this.reader = from?.reader ?? new RespReader();
    this.clientId = from?.clientId ?? 0;
  }
}

let nextSessionNo = 0;

export class RedisSession implements DrainMember, LaneRider {
  step: Step = "authenticating";
  readonly no = ++nextSessionNo;
  private log: Logger;
  private readonly reader = new RespReader();
  private loginTimer: NodeJS.Timeout | undefined;
  user = "";
  key = "";
  private password = "";
  backend: Backend | undefined;
  private drainRef: TenantDrain | undefined;
  private stats: TenantStats | undefined;

  private readonly pending: Pending[] = [];
  private head = 0;
  /** Whole commands held (before the login completes, during a pause or a switch), in order. */
  private held: Buffer[] = [];
  private heldSince = 0;
  private pauseRequested = false;
  private shuttingDown = false;

  // Session state, as the instance will have it once what is pending has run.
  private resp3 = false;
  private db = 0;
  private name: string | undefined;
  private tracking: Buffer[] | undefined;
  private inMulti = false;
  private watching = false;
  /** A WATCH spanned a switch: the transaction's EXEC must abort. */
  private watchBroken = false;
  private readonly subscriptions: Record<SubscribeKind, Set<string>> = { subscribe: new Set(), psubscribe: new Set(), ssubscribe: new Set() };
  /** Scripts the session loaded (EVAL, SCRIPT LOAD), by SHA-1: loaded on a new instance. */
  private readonly scripts = new Map<string, Buffer>();
  /** CLIENT SETINFO attributes (lib-name, lib-ver), and CLIENT NO-TOUCH: given to every connection of the session's. */
  private readonly clientInfo = new Map<string, Buffer>();
  private noTouch = false;

  /** Lane mode (no `backend`): where the session's commands go (the route as of the login or the last switch), and the lane its commands in flight ride. */
  private laneAt: { host: string; port: number; epoch: number } | undefined;
  private lane: Lane | undefined;

  constructor(
    private readonly socket: net.Socket,
    private readonly host: RedisSessionHost,
  ) {
    this.log = host.log.child({ engine: "redis", session: this.no, client: `${socket.remoteAddress}:${socket.remotePort}` });
    socket.setNoDelay(true);
    host.register(this);
    socket.on("data", (chunk: Buffer) => this.clientData(chunk));
    socket.on("error", (e) => this.close(`client socket error: ${e.message}`));
    socket.on("close", () => this.close("client closed the connection"));
    this.loginTimer = setTimeout(() => {
      if (this.step === "authenticating") this.fail("ERR tenantfleet: no AUTH within the login timeout");
    }, host.loginTimeoutMs);
    this.loginTimer.unref();
  }

  private get subscribed(): boolean {
    const s = this.subscriptions;
    return s.subscribe.size + s.psubscribe.size + s.ssubscribe.size > 0;
  }

  // ---------------------------------------------------------------- drain member

  get parked(): boolean {
    return this.step === "parked";
  }

  get epoch(): number {
    return this.backend?.epoch ?? this.laneAt?.epoch ?? this.host.route(this.key)?.epoch ?? 0;
  }

  get clientSocket(): net.Socket {
    return this.socket;
  }

  get holdup(): DrainMember["holdup"] {
    if (this.parked) return undefined;
    return this.inMulti ? "transaction" : "in_flight";
  }

  pause(): void {
    this.pauseRequested = true;
    if (this.step === "forwarding") this.step = "draining";
    this.tryPark();
  }

  resume(): void {
    this.pauseRequested = false;
    if (this.standby && !this.routeIsStale()) {
      void this.standby.backend.then((b) => b?.socket.destroy()); // the pause was called off
      this.standby = undefined;
    }
    if (this.step === "draining") {
      this.step = "forwarding";
      this.releaseHeld();
    } else if (this.step === "parked") void this.leavePark();
  }

  routeChanged(): void {
    if (this.step === "parked") void this.moveIfStale();
    else if (this.step === "forwarding" && this.routeIsStale()) {
      this.step = "draining";
      this.tryPark();
    }
  }

  shutdown(): void {
    this.shuttingDown = true;
    this.closeIfShuttingDown();
  }

  private closeIfShuttingDown(): void {
    if (!this.shuttingDown || this.step === "closed") return;
    if (this.step === "authenticating" || this.step === "parked" || ((this.step === "forwarding" || this.step === "draining") && this.idle)) {
      this.fail("ERR tenantfleet: the proxy is shutting down; reconnect: another proxy serves the same address");
    }
  }

  /** Nothing in flight, no transaction open, no partial reply. */
  private get idle(): boolean {
    return this.head === this.pending.length && !this.inMulti && (this.backend ? this.backend.reader.atBoundary : !!this.laneAt);
  }

  private routeIsStale(): boolean {
    const r = this.host.route(this.key);
    const at = this.backend?.epoch ?? this.laneAt?.epoch;
    return !!r && at !== undefined && r.epoch !== at;
  }

  private tryPark(): void {
    if (this.step !== "draining") return;
    if (!this.idle) return this.releaseBlocked();
    if (!this.pauseRequested && !this.routeIsStale()) {
      this.step = "forwarding";
      return this.releaseHeld();
    }
    this.step = "parked";
    this.drainRef?.check();
    if (this.routeIsStale()) void this.moveIfStale();
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

  /**
   * A draining session whose only command in flight is blocked (BLPOP, XREAD BLOCK, …) would hold
   * the drain until it is served: release it on this instance (CLIENT UNBLOCK … TIMEOUT, from a
   * connection of the same login) and issue it again, with the time it has left, after the pause.
   */
  private releaseBlocked(): void {
    if (this.pending.length - this.head !== 1) return;
    const p = this.pending[this.head]!;
    if (!p.blocking || p.blocking.released || !this.backend?.clientId) return;
    p.blocking.released = true;
    const b = this.backend;
    const side = net.connect({ host: b.route.host, port: b.route.port });
    side.setTimeout(this.host.connectTimeoutMs, () => side.destroy(new Error("timed out")));
    side.on("error", (e) => this.log.warn({ err: e.message }, "could not release a blocked command on its server; the drain waits for it"));
    side.end(Buffer.concat([encodeCommand(["AUTH", this.user, this.password]), encodeCommand(["CLIENT", "UNBLOCK", String(b.clientId), "TIMEOUT"]), encodeCommand(["QUIT"])]));
    side.resume();
  }

  // ---------------------------------------------------------------- client bytes

  private clientData(chunk: Buffer): void {
    if (this.step === "closed") return;
    if (!this.reader.feed(chunk)) return;
    const b = this.reader.buffer;
    let i = this.reader.offset;
    this.backend?.socket.cork();
    try {
      while (i < b.length) {
        const cmd = parseCommand(b, i);
        if (!cmd) {
          this.reader.offset = i;
          this.reader.waitFor(lastNeed());
          return;
        }
        const whole = b.subarray(i, cmd.end);
        i = cmd.end;
        this.reader.offset = i;
        if (cmd.args.length === 0) continue;
        if (this.held.length > 0 || this.holding()) this.hold(whole);
        else this.command(cmd.args, whole);
        if ((this.step as Step) === "closed") return;
      }
      this.reader.offset = i;
    } catch (e) {
      if (e instanceof RespProtocolError) this.fail(`ERR Protocol error: ${e.message}`);
      else this.fail(`ERR tenantfleet proxy error: ${(e as Error).message}`);
    } finally {
      this.backend?.socket.uncork();
    }
  }

  /** Whether a command arriving now waits: before the instance is reached, and during a pause (unless a MULTI must finish first). */
  private holding(): boolean {
    switch (this.step) {
      case "authenticating":
      case "forwarding":
        return false;
      case "draining":
        return !this.inMulti;
      default:
        return true; // connecting, parked, switching, pinning
    }
  }

  private hold(whole: Buffer): void {
    if (!this.heldSince) this.heldSince = Date.now();
    this.held.push(whole);
  }

  private releaseHeld(): void {
    if (this.held.length === 0) return this.closeIfShuttingDown();
    const held = this.held;
    this.held = [];
    if (this.heldSince && this.stats) this.stats.heldMs += Date.now() - this.heldSince;
    this.heldSince = 0;
    this.backend?.socket.cork();
    try {
      for (let k = 0; k < held.length; k++) {
        if (this.step === "closed") return;
        if (this.holding() || this.held.length > 0) {
          this.held.push(...held.slice(k)); // paused again: keep the rest, in order
          this.heldSince = Date.now();
          return;
        }
        this.command(parseCommand(held[k]!, 0)!.args, held[k]!);
      }
    } finally {
      this.backend?.socket.uncork();
    }
    this.closeIfShuttingDown();
  }

  /** One whole command from the client. */
  private command(args: Buffer[], whole: Buffer): void {
    const name = args[0]!.toString("latin1").toLowerCase();
    if (this.step === "authenticating") return this.unauthenticated(name, args);
    const stats = this.stats!;
    stats.queries++;
    stats.bytesIn += whole.length;
    // A lane session leaves its lane for a command that needs a connection of its own (a refused one is answered below, in its place).
    if (!this.backend && (name === "hello" || name === "reset" || needsOwnConnection(name, args)) && !refusal(name, args)) return this.pin(whole);
    switch (name) {
      case "quit":
        this.answer(OK);
        return this.afterReplies(() => this.close("client quit", true));
      case "auth":
        return this.reauth(args.length === 2 ? "default" : args[1]?.toString() ?? "", args[args.length - 1]?.toString() ?? "");
      case "hello":
        return this.hello(args, false);
      case "reset":
        return this.reset();
      case "select":
        return this.send(whole, { onReply: ok(() => (this.db = Number(args[1]))) });
      case "multi":
        this.inMulti = true;
        return this.send(whole);
      case "discard":
        this.inMulti = false;
        this.watching = this.watchBroken = false;
        return this.send(whole);
      case "exec":
        this.inMulti = false;
        if (this.watchBroken) {
          // The keys watched on the old instance were not watched here: abort, as a touched key would.
          this.watching = this.watchBroken = false;
          return this.send(encodeCommand(["DISCARD"]), { onReply: () => undefined, local: nullReply(this.resp3) });
        }
        this.watching = false;
        return this.send(whole);
      case "watch":
        if (!this.inMulti) this.watching = true;
        return this.send(whole);
      case "unwatch":
        if (!this.inMulti) this.watching = this.watchBroken = false;
        return this.send(whole);
      case "eval":
      case "eval_ro": {
        const body = args[1];
        return this.send(whole, { onReply: body ? ok(() => this.scripts.set(sha1(body), Buffer.from(body))) : undefined });
      }
      case "script": {
        const s = sub(args);
        if (s === "load" && args[2]) {
          const body = Buffer.from(args[2]);
          return this.send(whole, { onReply: ok(() => this.scripts.set(sha1(body), body)) });
        }
        if (s === "flush") return this.send(whole, { onReply: ok(() => this.scripts.clear()) });
        return this.send(whole);
      }
      case "client": {
        const why = refusal(name, args);
        if (why) return this.answer(errorReply(why));
        const s = sub(args);
        if (s === "setname" && args[2]) return this.send(whole, { onReply: ok(() => (this.name = args[2]!.toString())) });
        // CLIENT SETINFO rides a lane too (the instance answers as it would: Redis 7.0 has none); what it accepted goes to every later connection.
        const attr = setinfoAttribute(args);
        if (attr) return this.send(whole, { onReply: ok(() => this.clientInfo.set(attr, Buffer.from(args[3]!))) });
        if (s === "no-touch" && args[2]) return this.send(whole, { onReply: ok(() => (this.noTouch = args[2]!.toString("latin1").toLowerCase() === "on")) });
        if (s === "tracking" && args[2]) {
          const on = args[2].toString("latin1").toLowerCase() === "on";
          const saved = args.map((a) => Buffer.from(a));
          return this.send(whole, { onReply: ok(() => (this.tracking = on ? saved : undefined)) });
        }
        return this.send(whole);
      }
    }
    const ps = PUBSUB[name];
    if (ps) return this.pubsub(ps, args, whole);
    const why = refusal(name, args);
    if (why) return this.answer(errorReply(why));
    if (!this.inMulti) {
      const t = blockingTimeout(name, args);
      if (t) {
        const ms = timeoutMs(args, t);
        const saved = args.map((a) => Buffer.from(a));
        return this.send(whole, { blocking: { args: saved, timeout: t, deadline: ms > 0 ? Date.now() + ms : 0 } });
      }
    }
    this.send(whole);
  }

  private pubsub(ps: (typeof PUBSUB)[string], args: Buffer[], whole: Buffer): void {
    const set = this.subscriptions[ps.kind];
    const channels = args.slice(1).map((a) => a.toString("latin1"));
    let replies = channels.length;
    if (ps.adds) for (const c of channels) set.add(c);
    else if (channels.length === 0) {
      replies = Math.max(1, set.size); // one confirmation per channel unsubscribed, or one
      set.clear();
    } else for (const c of channels) set.delete(c);
    if (replies === 0) return this.send(whole); // the server's arity error
    this.send(whole, {
      replies,
      pubsub: ps.kind,
      onReply: (b, at, end) => {
        if (ps.adds && errorText(b, at, end) !== undefined) for (const c of channels) set.delete(c);
      },
    });
  }

  /** A command before the login: only AUTH, HELLO (with AUTH) and QUIT, as Redis with its default user off. */
  private unauthenticated(name: string, args: Buffer[]): void {
    if (name === "auth") {
      if (args.length === 2) return this.answer(errorReply(`${WRONGPASS} (tenantfleet: AUTH <user> <password>, the user is the tenant database's, e.g. cache__acme)`));
      if (args.length !== 3) return this.answer(errorReply("ERR wrong number of arguments for 'auth' command"));
      return this.login(args[1]!.toString(), args[2]!.toString(), undefined);
    }
    if (name === "hello") return this.hello(args, true);
    if (name === "quit") {
      this.socket.write(OK);
      return this.close("client quit", true);
    }
    this.answer(errorReply("NOAUTH Authentication required."));
  }

  /** HELLO [protover [AUTH user pass] [SETNAME name]]. */
  private hello(args: Buffer[], first: boolean): void {
    let proto: number | undefined;
    let auth: [string, string] | undefined;
    let setname: string | undefined;
    for (let k = 1; k < args.length; k++) {
      const a = args[k]!.toString().toLowerCase();
      if (k === 1 && /^\d+$/.test(a)) proto = Number(a);
      else if (a === "auth" && k + 2 < args.length) (auth = [args[k + 1]!.toString(), args[k + 2]!.toString()]), (k += 2);
      else if (a === "setname" && k + 1 < args.length) (setname = args[k + 1]!.toString()), k++;
      else return this.answer(errorReply(`ERR Syntax error in HELLO option '${args[k]!.toString()}'`));
    }
    if (proto !== undefined && proto !== 2 && proto !== 3) return this.answer(errorReply("NOPROTO unsupported protocol version"));
    const forward = encodeCommand(["HELLO", ...(proto ? [String(proto)] : []), ...(setname !== undefined ? ["SETNAME", setname] : [])]);
    const resp3 = proto ? proto === 3 : this.resp3;
    const applied = { onReply: ok(() => ((this.resp3 = resp3), setname !== undefined && (this.name = setname))) };
    if (first) {
      if (!auth) return this.answer(errorReply("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
      // The lane of the session's RESP version carries the HELLO (the same version: a no-op there); a name needs a connection of its own.
      return this.login(auth[0], auth[1], () => ((this.resp3 = resp3), this.send(forward, applied)), setname !== undefined);
    }
    if (auth && (auth[0] !== this.user || auth[1] !== this.password)) return this.reauth(auth[0], auth[1]);
    this.send(forward, applied);
  }

  /** AUTH on a logged-in session: the same login is answered OK; another one cannot be taken here. */
  private reauth(user: string, password: string): void {
    if (user === this.user && password === this.password) return this.answer(OK);
    if (!this.verify(user, password)) return this.answer(errorReply(WRONGPASS));
    this.answer(errorReply("ERR tenantfleet: this connection is logged in as another tenant database's user; open a new connection for this one"));
  }

  /** RESET: as Redis (no transaction, no subscription, RESP2, db 0, no name, no tracking), the login kept. */
  private reset(): void {
    this.inMulti = this.watching = this.watchBroken = false;
    for (const s of Object.values(this.subscriptions)) s.clear();
    this.resp3 = false;
    this.db = 0;
    this.name = undefined;
    this.tracking = undefined;
    this.send(encodeCommand(["RESET"]));
    this.send(encodeCommand(["AUTH", this.user, this.password]), { swallow: true });
  }

  private verify(user: string, password: string): Route | undefined {
    const r = this.host.routeOfLogin(user);
    if (!r || r.engine !== "redis") return undefined;
    const want = Buffer.from(r.scramVerifier, "hex");
    const got = createHash("sha256").update(password).digest();
    return want.length === got.length && timingSafeEqual(want, got) ? r : undefined;
  }

  private login(user: string, password: string, then: (() => void) | undefined, ownConnection = false): void {
    const route = this.verify(user, password);
    if (!route) {
      const r = this.host.routeOfLogin(user);
      if (r) this.host.stats(keyString(r)).authFailures++;
      this.log.info({ user }, "login refused");
      return this.answer(errorReply(WRONGPASS));
    }
    clearTimeout(this.loginTimer);
    this.user = user;
    this.password = password;
    this.key = keyString(route);
    this.log = this.log.child({ tenant: route.tenant, database: route.database });
    this.stats = this.host.stats(this.key);
    this.drainRef = this.host.drain(this.key);
    this.drainRef.join(this);
    this.step = "connecting";
    void this.connectFirst(then, ownConnection || !this.host.multiplex);
  }

  private async connectFirst(then: (() => void) | undefined, ownConnection: boolean): Promise<void> {
    const drain = this.drainRef!;
    await drain.waitOpen();
    const route = this.host.route(this.key);
    if (this.step === "closed") return;
    if (!route) return this.fail(`ERR tenantfleet: tenant database ${this.key} is no longer in the catalog`);
    if (ownConnection) {
      if (!(await this.openOwnConnection(route))) return;
    } else this.laneAt = { host: route.host, port: route.port, epoch: route.epoch };
    this.stats!.connections++;
    this.stats!.active++;
    this.step = this.pauseRequested ? "draining" : "forwarding";
    this.backend?.socket.cork();
    if (then) then();
    else this.answer(OK);
    this.backend?.socket.uncork();
    this.releaseHeld();
    this.tryPark();
  }

  // ---------------------------------------------------------------- the lane

  /** The command `whole` needs a connection of the session's own: held, with what follows, until the session's commands on the lane are answered. */
  private pin(whole: Buffer): void {
    this.hold(whole);
    this.step = "pinning";
    this.pinWhenIdle();
  }

  private pinWhenIdle(): void {
    if (this.step === "pinning" && this.head === this.pending.length) void this.openOwn();
  }

  /** The session's own connection to `route`'s instance; false when it failed (the session is closed then) or the session closed meanwhile. */
  private async openOwnConnection(route: Route): Promise<boolean> {
    try {
      await this.open(route);
    } catch (e) {
      this.fail(`ERR tenantfleet: cannot reach tenant database ${this.key}: ${(e as Error).message}`);
      return false;
    }
    return this.step !== "closed";
  }

  private async openOwn(): Promise<void> {
    this.step = "connecting";
    const route = this.host.route(this.key);
    if (!route) return this.fail(`ERR tenantfleet: tenant database ${this.key} is no longer in the catalog`);
    if (!(await this.openOwnConnection(route))) return;
    this.laneAt = undefined;
    this.lane = undefined;
    this.step = this.pauseRequested ? "draining" : "forwarding";
    this.releaseHeld();
    this.tryPark();
  }

  laneReply(b: Buffer, at: number, end: number): void {
    if (this.step === "closed") return;
    try {
      this.reply(b, at, end);
    } catch (e) {
      this.fail(`ERR tenantfleet proxy error: ${(e as Error).message}`);
    }
  }

  laneReplied(): void {
    if (this.step === "draining") this.tryPark();
    else if (this.step === "pinning") this.pinWhenIdle();
    else if (this.step === "forwarding") this.closeIfShuttingDown();
  }

  /**
   * The lane broke under commands of this session: each gets an error reply in its place (it may
   * or may not have run, as with any connection lost), and the session goes on: its next command
   * rides a new lane.
   */
  laneBroken(lane: Lane, reason: string): void {
    if (lane !== this.lane || this.step === "closed" || this.head === this.pending.length) return;
    this.lane = undefined;
    const lost = errorReply(`ERR tenantfleet: ${reason} before the command's reply came; it may or may not have run`);
    this.socket.cork();
    for (let k = this.head; k < this.pending.length; k++) {
      const p = this.pending[k]!;
      if (p.local) this.socket.write(p.local);
      else if (!p.swallow) this.socket.write(lost);
    }
    this.socket.uncork();
    this.log.warn({ err: reason }, "lane broke under the session's commands: each answered with an error");
    this.emptied();
    this.laneReplied();
  }

  // ---------------------------------------------------------------- the instance

  /**
   * A connection to `at` logged in as the session's user with the session's state (RESP version,
   * db, name, tracking, scripts): every reply read here, none reaches the client. Subscriptions
   * are made once it is the session's (`open`), where their confirmations are counted.
   */
  private async connectAs(at: { host: string; port: number }, epoch: number, route: Route): Promise<Backend> {
    const socket = net.connect({ host: at.host, port: at.port });
    socket.setNoDelay(true);
    socket.on("error", () => undefined); // reported by the exchange below, then by the session's handlers
    const commands: (string | Buffer)[][] = [["AUTH", this.user, this.password], ["CLIENT", "ID"]];
    if (this.resp3) commands.push(["HELLO", "3"]);
    if (this.db !== 0) commands.push(["SELECT", String(this.db)]);
    if (this.name !== undefined) commands.push(["CLIENT", "SETNAME", this.name]);
    if (this.tracking) commands.push(this.tracking);
    for (const [attr, value] of this.clientInfo) commands.push(["CLIENT", "SETINFO", attr, value]);
    if (this.noTouch) commands.push(["CLIENT", "NO-TOUCH", "ON"]);
    for (const body of this.scripts.values()) commands.push(["SCRIPT", "LOAD", body]);
    const b = new Backend(socket, epoch, route);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${at.host}:${at.port} did not answer the login within ${this.host.connectTimeoutMs} ms`)), this.host.connectTimeoutMs);
        const done = (e?: Error) => (clearTimeout(timer), socket.removeAllListeners("data"), e ? reject(e) : resolve());
        socket.once("error", (e) => done(e));
        socket.once("close", () => done(new Error("the server closed the connection during the login")));
        let n = 0;
        socket.on("data", (chunk: Buffer) => {
          if (!b.reader.feed(chunk)) return;
          const buf = b.reader.buffer;
          for (let i = b.reader.offset; n < commands.length; ) {
            const end = valueEnd(buf, i);
            if (end < 0) {
              b.reader.offset = i;
              return b.reader.waitFor(lastNeed());
            }
            const err = errorText(buf, i, end);
            const cmd = commands[n]!;
            if (err !== undefined) return done(new Error(`${String(cmd[0])}${cmd[0] === "AUTH" ? "" : ` ${String(cmd[1] ?? "")}`}: ${err}`));
            if (n === 1) b.clientId = Number(buf.toString("latin1", i + 1, end - 2));
            b.reader.offset = i = end;
            n++;
          }
          done();
        });
        socket.write(Buffer.concat(commands.map(encodeCommand)));
      });
    } catch (e) {
      socket.destroy();
      throw e;
    }
    socket.removeAllListeners("error");
    socket.removeAllListeners("close");
    socket.on("error", () => undefined); // a standby that fails is found destroyed at the switch
    socket.pause(); // nothing is read until the connection is the session's (open)
    return b;
  }

  /** Makes `b` (logged in) the session's connection, and subscribes it to the session's channels. */
  private async open(route: Route, ready?: Backend): Promise<void> {
    const b = ready ?? (await this.connectAs(route, route.epoch, route));
    const socket = b.socket;
    const old = this.backend;
    this.backend = b;
    socket.on("data", (chunk: Buffer) => this.backendData(b, chunk));
    socket.on("error", (e) => this.backendGone(b, `server connection error: ${e.message}`));
    socket.on("close", () => this.backendGone(b, "the server closed the connection"));
    socket.resume();
    const steps: Promise<void>[] = [];
    for (const [kind, set] of Object.entries(this.subscriptions) as [SubscribeKind, Set<string>][]) {
      if (set.size === 0) continue;
      steps.push(
        new Promise<void>((resolve, reject) => {
          let left = set.size;
          this.send(encodeCommand([kind.toUpperCase(), ...set]), {
            swallow: true,
            replies: set.size,
            pubsub: kind,
            onReply: (buf, at, end) => {
              const err = errorText(buf, at, end);
              if (err !== undefined) return reject(new Error(`${kind}: ${err}`));
              if (--left === 0) resolve();
            },
          });
        }),
      );
    }
    if (!b.reader.atBoundary) this.backendData(b, Buffer.alloc(0)); // what came after the login's replies
    if (steps.length) {
      const timer = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the server did not confirm the subscriptions in time")), this.host.connectTimeoutMs).unref());
      try {
        await Promise.race([Promise.all(steps), timer]);
      } catch (e) {
        this.backend = old;
        this.pending.length = this.head = 0;
        socket.destroy();
        throw e;
      }
    }
    if (old && this.tracking) this.socket.write(INVALIDATE_ALL); // the client's cache may hold what the old instance said
  }

  /** Parked, with the switch's target announced: log in there now, so the switch only swaps connections. */
  drained(): void {
    const t = this.drainRef?.target;
    const b = this.backend;
    // A lane session has nothing to warm: the new instance's lane logs in in front of its first command.
    if (!t || !b || this.standby || (t.host === b.route.host && t.port === b.route.port)) return;
    const route = b.route;
    const standby = this.connectAs(t, -1, route).then(
      (s) => s,
      () => undefined, // the switch logs in itself
    );
    this.standby = { at: `${t.host}:${t.port}`, backend: standby };
  }

  private standby: { at: string; backend: Promise<Backend | undefined> } | undefined;

  private backendData(b: Backend, chunk: Buffer): void {
    if (this.step === "closed") return;
    if (!b.reader.feed(chunk)) return;
    const buf = b.reader.buffer;
    let i = b.reader.offset;
    this.socket.cork();
    try {
      while (i < buf.length) {
        const end = valueEnd(buf, i);
        if (end < 0) {
          b.reader.offset = i;
          b.reader.waitFor(lastNeed());
          return;
        }
        if (b === this.backend) this.reply(buf, i, end);
        else if (this.isPush(buf, i)) this.socket.write(buf.subarray(i, end)); // a message the old instance delivered late
        i = end;
      }
      b.reader.offset = i;
    } catch (e) {
      this.fail(`ERR tenantfleet proxy error: ${(e as Error).message}`);
    } finally {
      this.socket.uncork();
    }
    if (this.step === "draining") this.tryPark();
  }

  /** A message nobody asked for: RESP3 push (not a confirmation), or a RESP2 pub/sub message on a subscribed connection. */
  private isPush(b: Buffer, at: number): boolean {
    const t = b[at];
    if (t !== 62 && !(t === 42 && this.subscribed)) return false;
    const kind = headStrings(b, at, 1)[0];
    if (kind !== undefined && CONFIRMATIONS[kind]) {
      const p = this.pending[this.head];
      return !(p?.pubsub === CONFIRMATIONS[kind]);
    }
    return t === 62 || (kind !== undefined && PUSH_KINDS.has(kind));
  }

  private reply(b: Buffer, at: number, end: number): void {
    if (this.isPush(b, at)) {
      this.stats!.bytesOut += end - at;
      this.socket.write(b.subarray(at, end));
      return;
    }
    const p = this.pending[this.head];
    if (!p) {
      this.log.warn({ reply: b.toString("latin1", at, Math.min(end, at + 80)) }, "a reply to no command: closing the session");
      return this.fail("ERR tenantfleet: the server sent a reply the proxy cannot pair with a command");
    }
    if (p.blocking?.released && isNull(b, at)) {
      // Released for a pause: issue it again after the pause with the time it has left.
      this.done(p);
      const left = p.blocking.deadline === 0 ? 0 : p.blocking.deadline - Date.now();
      if (p.blocking.deadline !== 0 && left <= 0) return void this.socket.write(b.subarray(at, end));
      const again = p.blocking.deadline === 0 ? p.blocking.args : withTimeout(p.blocking.args, p.blocking.timeout, left);
      this.held.unshift(encodeCommand(again));
      if (!this.heldSince) this.heldSince = Date.now();
      return;
    }
    p.onReply?.(b, at, end);
    if (!p.swallow && !p.local) {
      this.stats!.bytesOut += end - at;
      this.socket.write(b.subarray(at, end));
    }
    if (p.local) this.socket.write(p.local);
    if (--p.replies <= 0 || (p.pubsub && errorText(b, at, end) !== undefined)) this.done(p);
  }

  private done(p: Pending): void {
    if (this.pending[this.head] !== p) return;
    this.head++;
    // Replies the proxy wrote itself, queued behind this one.
    while (this.head < this.pending.length && this.pending[this.head]!.local && this.pending[this.head]!.replies === 0) {
      this.socket.write(this.pending[this.head]!.local!);
      this.head++;
    }
    if (this.head === this.pending.length) this.emptied();
  }

  /** Nothing is pending any more: what waited for that (a QUIT's close) runs. */
  private emptied(): void {
    this.pending.length = 0;
    this.head = 0;
    const after = this.afterIdle;
    this.afterIdle = undefined;
    after?.();
  }

  private afterIdle: (() => void) | undefined;
  private afterReplies(f: () => void): void {
    if (this.head === this.pending.length) f();
    else this.afterIdle = f;
  }

  /** Sends a command to the instance and awaits its reply. */
  private send(bytes: Buffer, p: Partial<Pending> = {}): void {
    this.pending.push({ replies: 1, ...p });
    if (this.backend) return void this.backend.socket.write(bytes);
    const at = this.laneAt!;
    this.lane = this.host.lane(this.key, { host: at.host, port: at.port, user: this.user, password: this.password, resp3: this.resp3 });
    this.lane.send(this, bytes);
  }

  /** A reply the proxy gives itself, in its place among the replies to come (at once when none is: always before the login). */
  private answer(reply: Buffer): void {
    if (this.head === this.pending.length) this.socket.write(reply);
    else this.pending.push({ replies: 0, local: reply });
  }

  /** Moves this parked session to the committed route's instance, with its state. */
  private async switchBackend(): Promise<void> {
    const route = this.host.route(this.key);
    const old = this.backend;
    if (route && !old && this.laneAt) return this.switchLane(route);
    if (!route || !old) return;
    this.step = "switching";
    const started = Date.now();
    const standby = this.standby;
    this.standby = undefined;
    try {
      let ready: Backend | undefined;
      if (standby?.at === `${route.host}:${route.port}`) {
        const b = await standby.backend;
        if (b && !b.socket.destroyed) ready = new Backend(b.socket, route.epoch, route, b);
      } else void standby?.backend.then((b) => b?.socket.destroy());
      await this.open(route, ready);
      if (this.watching) this.watchBroken = true;
      old.socket.destroy();
      this.stats!.switches++;
      this.log.info({ epoch: route.epoch, server: route.server, ms: Date.now() - started, warm: !!ready, subscriptions: this.subscribed, scripts: this.scripts.size }, "session switched to the committed route");
      if ((this.step as Step) !== "switching") return;
      this.step = "parked";
      if (this.routeIsStale()) return this.switchBackend();
      if (!this.pauseRequested) return this.leavePark();
      this.drainRef?.check();
    } catch (e) {
      this.stats!.switchFailures++;
      const msg = (e as Error).message;
      this.log.error({ err: msg, epoch: route.epoch }, "session could not move to the committed route; closing it");
      this.fail(`ERR tenantfleet: tenant database ${this.key} moved to another server and this connection could not follow (${msg}); reconnect, the new server is already serving`);
    }
  }

  /** A lane session, parked, moves to the committed route: its next commands ride a lane there, behind the scripts it loaded. */
  private switchLane(route: Route): void {
    this.laneAt = { host: route.host, port: route.port, epoch: route.epoch };
    this.lane = undefined;
    for (const body of this.scripts.values()) this.send(encodeCommand(["SCRIPT", "LOAD", body]), { swallow: true });
    this.stats!.switches++;
    this.log.debug({ epoch: route.epoch, server: route.server, scripts: this.scripts.size }, "lane session switched to the committed route");
    if (!this.pauseRequested) return void this.leavePark();
    this.drainRef?.check();
  }

  private backendGone(b: Backend, reason: string): void {
    if (b !== this.backend || this.step === "closed" || this.step === "switching") return;
    this.fail(`ERR tenantfleet: ${reason}`);
  }

  /**
   * Closes with an error reply when the client awaits one (errors are RESP errors, never a bare
   * reset); an idle client is only disconnected, as Redis does at shutdown: an unasked error reply
   * would be paired with no command (ioredis throws on one).
   */
  fail(message: string): void {
    if (this.step === "closed") return;
    const awaiting = this.step === "authenticating" || this.step === "connecting" || this.head < this.pending.length || this.held.length > 0;
    if (!this.socket.destroyed) awaiting ? this.socket.end(errorReply(message)) : this.socket.end();
    this.close(message);
  }

  close(reason: string, ended = false): void {
    if (this.step === "closed") return;
    const wasServing = !!this.stats && this.step !== "authenticating" && this.step !== "connecting";
    this.step = "closed";
    clearTimeout(this.loginTimer);
    if (ended && !this.socket.destroyed) this.socket.end();
    this.backend?.socket.destroy();
    void this.standby?.backend.then((b) => b?.socket.destroy());
    if (wasServing) this.stats!.active--;
    this.drainRef?.leave(this);
    this.host.unregister(this);
    this.log.debug({ reason }, "session closed");
  }
}

/** An onReply that runs `f` when the reply is not an error. */
function ok(f: () => void): (b: Buffer, at: number, end: number) => void {
  return (b, at, end) => {
    if (errorText(b, at, end) === undefined) f();
  };
}

const sha1 = (b: Buffer) => createHash("sha1").update(b).digest("hex");
