/**
 * One proxy process: the PostgreSQL listener (and the MySQL one, when asked for), the catalog
 * follower, one drain per tenant database, cancel routing across the fleet, and the admin endpoint
 * (metrics, health). Both protocols' sessions are members of the same drains.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { randomInt } from "node:crypto";
import type { Logger } from "pino";
import type { ClientConfig } from "pg";
import { CatalogFollower } from "./catalog/follower";
import { type Route, type RouteTarget } from "./catalog/routes";
import { TenantDrain } from "./drain";
import { Metrics, type TenantStats } from "./metrics";
import { PgSession, type SessionHost } from "./postgres/session";
import { Pool, ServerBudget, type PoolConnection, type PoolConnector, type PoolOptions, type PoolTarget } from "./pool";
import { pgPoolConnector, type PgPool } from "./postgres/backend";
import { parseVerifier } from "./postgres/scram";
import { cancelRequest } from "./postgres/writer";
import { SQLSTATE } from "./postgres/codes";
import { MysqlSession, type MysqlSessionHost } from "./mysql/session";
import { mysqlPoolConnector, profileKey } from "./mysql/pooled";
import { ER } from "./mysql/codes";
import { errPacket, type ErrPacket } from "./mysql/handshake";
import { RedisSession, type RedisSessionHost } from "./redis/session";
import { Lane } from "./redis/lane";

export interface ProxyOptions {
  proxyId: string;
  catalog: ClientConfig;
  listen: { host: string; port: number };
  /** The MySQL-protocol listener (MariaDB/MySQL tenant databases); none when unset. */
  mysqlListen?: { host: string; port: number };
  /** The Redis (RESP) listener (Redis tenant databases); none when unset. */
  redisListen?: { host: string; port: number };
  /** Redis sessions share server connections (lanes) until one needs its own (default on). */
  redisMultiplex?: boolean;
  admin: { host: string; port: number };
  /** Address other proxies use to reach this one; defaults to the listen address. */
  advertise?: { host: string; port: number };
  tls?: { cert: string | Buffer; key: string | Buffer };
  log: Logger;
  connectTimeoutMs?: number;
  /** A client that has not logged in after this long is dropped (PostgreSQL: authentication_timeout). */
  loginTimeoutMs?: number;
  /** On SIGTERM, how long sessions get to reach an idle point before they are closed anyway. */
  shutdownGraceMs?: number;
  heartbeatMs?: number;
  /** Transaction pool mode: how long a client waits for a server connection (default 30 s). */
  poolQueueTimeoutMs?: number;
  /** Transaction pool mode: an idle server connection is closed after this long (default 10 min). */
  poolIdleTimeoutMs?: number;
}

/** BackendKeyData pid layout: 11 bits of proxy ordinal, 20 bits of session number (31 bits, positive). */
const SESSION_BITS = 20;
export const ordinalOfPid = (pid: number) => pid >>> SESSION_BITS;

export class Proxy {
  readonly follower: CatalogFollower;
  readonly metrics: Metrics;
  private server: net.Server | undefined;
  private admin: import("node:http").Server | undefined;
  private readonly drains = new Map<string, TenantDrain>();
  private readonly sessions = new Map<number, PgSession>();
  private mysqlServer: net.Server | undefined;
  private readonly mysqlSessions = new Map<number, MysqlSession>();
  /** MySQL logins (the tenant database's user) → route key. */
  private readonly mysqlLogins = new Map<string, string>();
  private nextMysqlSession = 0;
  private readonly mysqlHost: MysqlSessionHost;
  private redisServer: net.Server | undefined;
  private readonly redisSessions = new Set<RedisSession>();
  /** Redis logins (the tenant database's ACL user) → route key. */
  private readonly redisLogins = new Map<string, string>();
  private readonly redisHost: RedisSessionHost;
  /** Redis lanes: route key, instance address, RESP version and login → the shared connection. */
  private readonly redisLanes = new Map<string, Lane>();
  private laneSweep: NodeJS.Timeout | undefined;
  /** Transaction-mode pools of each tenant database (its committed route), by client profile (MySQL; PostgreSQL has one, ""). */
  private readonly pools = new Map<string, Map<string, Pick<Pool<PoolConnection>, "epoch" | "target" | "retire" | "resize" | "open" | "lent" | "waiting">>>();
  /** Transaction-mode pools opened on an announced switch target (onAnnounce), by tenant database. */
  private readonly nextPools = new Map<string, { pool: PgPool; timer: NodeJS.Timeout }>();
  /** This proxy's connections per server, over the pools on it. */
  private readonly budgets = new Map<string, ServerBudget>();
  private nextSession = 0;
  private readonly host: SessionHost;
  readonly log: Logger;
  port = 0;
  mysqlPort = 0;
  redisPort = 0;
  adminPort = 0;

  constructor(private readonly opts: ProxyOptions) {
    this.log = opts.log;
    this.metrics = new Metrics(opts.proxyId);
    const secure = opts.tls ? tls.createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }) : undefined;
    this.follower = new CatalogFollower({
      catalog: opts.catalog,
      proxyId: opts.proxyId,
      log: opts.log,
      ...(opts.heartbeatMs ? { heartbeatMs: opts.heartbeatMs } : {}),
    });
    this.host = {
      log: opts.log,
      tls: secure,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      loginTimeoutMs: opts.loginTimeoutMs ?? 60_000,
      route: (key) => this.follower.routes.get(key),
      drain: (key) => this.drain(key),
      stats: (key) => this.stats(key),
      register: (s) => this.register(s),
      unregister: (s) => this.sessions.delete(s.pid),
      cancel: (pid, secret) => void this.cancel(pid, secret),
      pool: (key, route) => this.pool(key, route),
    };
    this.mysqlHost = {
      log: opts.log,
      tls: secure,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      loginTimeoutMs: opts.loginTimeoutMs ?? 60_000,
      routeOfLogin: (user) => {
        const key = this.mysqlLogins.get(user);
        return key === undefined ? undefined : this.follower.routes.get(key);
      },
      route: (key) => this.follower.routes.get(key),
      databaseExists: (name) => this.follower.routes.has(name),
      register: (s) => this.registerMysql(s),
      unregister: (s) => {
        if (this.mysqlSessions.get(s.connectionId) === s) this.mysqlSessions.delete(s.connectionId);
      },
      drain: (key) => this.drain(key),
      stats: (key) => this.stats(key),
      kill: (requester, id, what) => this.killMysql(requester, id, what),
      pool: (key, route, profile) => {
        const target = { host: route.host, port: route.port, database: route.backendDatabase, user: route.role };
        return this.poolFor(key, profileKey(profile), route, () => mysqlPoolConnector(target, profile));
      },
    };
    this.redisHost = {
      log: opts.log,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      loginTimeoutMs: opts.loginTimeoutMs ?? 60_000,
      routeOfLogin: (user) => {
        const key = this.redisLogins.get(user);
        return key === undefined ? undefined : this.follower.routes.get(key);
      },
      route: (key) => this.follower.routes.get(key),
      drain: (key) => this.drain(key),
      stats: (key) => this.stats(key),
      register: (s) => this.redisSessions.add(s),
      unregister: (s) => this.redisSessions.delete(s),
      multiplex: opts.redisMultiplex ?? true,
      lane: (key, t) => {
        const id = `${key}\0${t.host}:${t.port}\0${t.resp3 ? 3 : 2}\0${t.user}`;
        let lane = this.redisLanes.get(id);
        if (!lane || lane.broken) {
          const stats = this.stats(key);
          lane = new Lane(t, (l) => (stats.lanes--, this.redisLanes.get(id) === l && this.redisLanes.delete(id)), opts.connectTimeoutMs ?? 10_000);
          this.redisLanes.set(id, lane);
          stats.lanes++;
          this.startLaneSweep();
        }
        return lane;
      },
    };
    this.follower.on("route", (key, route, prev) => this.onRoute(key, route, prev));
    this.follower.on("pause", (key, p) => this.onPause(key, p.pauseId, p.remainingMs, p.target));
    this.follower.on("unpause", (key) => this.onUnpause(key, "resumed"));
    this.follower.on("announce", (key, target, ttlMs) => this.onAnnounce(key, target, ttlMs));
    this.follower.on("withdraw", (key) => {
      this.drains.get(key)?.withdraw();
      this.dropNextPool(key);
    });
    this.follower.on("heartbeat", () => this.reportDraining());
  }

  async start(): Promise<void> {
    // Listen before registering in the catalog: it must carry the bound ports (port 0 picks free
    // ones), where other proxies forward CancelRequests. Connections wait until routes are loaded.
    let following = false;
    const early: { socket: net.Socket; serve: (s: net.Socket) => void }[] = [];
    const listen = async (at: { host: string; port: number }, errorMsg: string, serve: (s: net.Socket) => void): Promise<net.Server> => {
      const server = net.createServer((socket) => {
        if (following) serve(socket);
        else early.push({ socket: socket.on("error", () => socket.destroy()), serve });
      });
      server.on("error", (e) => this.log.error({ err: e.message }, errorMsg));
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(at.port, at.host, () => resolve());
      });
      return server;
    };
    const portOf = (server: net.Server) => (server.address() as net.AddressInfo).port;
    this.server = await listen(this.opts.listen, "listener error", (socket) => new PgSession(socket, this.host));
    this.port = portOf(this.server);
    if (this.opts.mysqlListen) {
      this.mysqlServer = await listen(this.opts.mysqlListen, "MySQL listener error", (socket) => new MysqlSession(socket, this.mysqlHost));
      this.mysqlPort = portOf(this.mysqlServer);
    }
    if (this.opts.redisListen) {
      this.redisServer = await listen(this.opts.redisListen, "Redis listener error", (socket) => new RedisSession(socket, this.redisHost));
      this.redisPort = portOf(this.redisServer);
    }
    this.admin = await this.metrics.serve(this.opts.admin.host, this.opts.admin.port, () => ({
      proxyId: this.opts.proxyId,
      ordinal: this.follower.ordinal,
      catalogConnected: this.follower.connected,
      routes: this.follower.routes.size,
      sessions: this.sessions.size + this.mysqlSessions.size + this.redisSessions.size,
      paused: [...this.drains.values()].filter((d) => d.paused).map((d) => ({ key: d.key, pauseId: d.pauseId, report: d.report() })),
    }));
    this.adminPort = (this.admin.address() as net.AddressInfo).port;
    const advertise = this.opts.advertise ?? { host: this.opts.listen.host, port: this.port };
    // Peers reach this proxy's MySQL listener on the advertised host (a KILL of a session here).
    this.follower.setAddress({ ...advertise, ...(this.mysqlPort ? { mysqlPort: this.mysqlPort } : {}) }, `http://${this.opts.admin.host}:${this.adminPort}`);
    await this.follower.start();
    following = true;
    for (const { socket, serve } of early.splice(0)) if (!socket.destroyed) serve(socket);
  }

  private stats(key: string): TenantStats {
    const r = this.follower.routes.get(key);
    return this.metrics.stats(key, r?.tenant ?? "_unknown", r?.database ?? "_unknown");
  }

  private drain(key: string): TenantDrain {
    let d = this.drains.get(key);
    if (!d) {
      d = new TenantDrain(key, {
        drained: (dr) => this.ack(dr, "drained", { ...dr.report(), ms: Date.now() - dr.pausedAt }),
        progress: (dr) => this.ack(dr, "draining", { ...dr.report() }),
        switched: (dr, epoch) => this.ack(dr, "switched", { epoch, ...dr.report() }),
        leaseExpired: (dr) => void this.leaseExpired(dr),
      });
      this.drains.set(key, d);
    }
    return d;
  }

  private routeKey(key: string): { tenant: string; database: string } | undefined {
    const r = this.follower.routes.get(key);
    return r && { tenant: r.tenant, database: r.database };
  }

  private ack(d: TenantDrain, phase: string, detail: Record<string, unknown>, pauseId = d.pauseId): void {
    const k = this.routeKey(d.key);
    if (!k || pauseId === undefined) return;
    this.log.info({ tenant: k.tenant, database: k.database, pauseId, phase, ...detail }, `tenant database ${phase}`);
    this.follower.ack(k, pauseId, phase, detail).catch((e: Error) => this.log.warn({ err: e.message, tenant: k.tenant, database: k.database }, "could not write acknowledgement to the catalog"));
  }

  private onPause(key: string, pauseId: number, remainingMs: number, target?: TenantDrain["target"]): void {
    const d = this.drain(key);
    const fresh = d.pauseId !== pauseId;
    if (fresh) this.stats(key).pauses++;
    d.pause(pauseId, remainingMs, target); // acknowledges "draining" (what holds it up) or "drained"
  }

  private onUnpause(key: string, reason: string): void {
    const d = this.drains.get(key);
    if (!d?.paused) return;
    const pauseId = d.pauseId;
    const held = Date.now() - d.pausedAt;
    d.resume();
    this.ack(d, "resumed", { reason, pausedMs: held }, pauseId);
  }

  /**
   * Lanes close when nothing rides them: those to an instance the route no longer names (after a
   * move: the old copy is fenced, its connections are cut anyway) and those idle for a minute.
   */
  private startLaneSweep(): void {
    if (this.laneSweep) return;
    this.laneSweep = setInterval(() => {
      for (const [id, lane] of this.redisLanes) {
        if (lane.inFlight > 0) continue;
        const route = this.follower.routes.get(id.slice(0, id.indexOf("\0")));
        const moved = !route || route.host !== lane.target.host || route.port !== lane.target.port;
        if (moved || Date.now() - lane.lastUsed > 60_000) lane.close();
      }
    }, 5_000);
    this.laneSweep.unref();
  }

  /**
   * The coordinator announced where `key` will switch to: sessions log in there (session mode, and
   * pinned sessions), and a `transaction`-mode database gets its pool for that server now, filled
   * like the current one; the route's commit adopts it (onRoute), else it closes after `ttlMs`.
   */
  private onAnnounce(key: string, target: RouteTarget, ttlMs: number): void {
    this.drains.get(key)?.announce(target, ttlMs);
    const route = this.follower.routes.get(key);
    const current = this.pools.get(key)?.get("") as PgPool | undefined;
    if (!route || route.engine !== "postgres" || route.poolMode !== "transaction" || !current) return;
    // The target's own budget comes with the committed route; until then, the server's as known.
    const next: Route = { ...route, ...target, epoch: route.epoch + 1, serverBudget: undefined };
    if (samePoolTarget(current, next) || (this.nextPools.get(key) && samePoolTarget(this.nextPools.get(key)!.pool, next))) return;
    this.dropNextPool(key);
    const pool = this.newPool(key, "", next, pgConnector(next));
    current.prepare(pool);
    const timer = setTimeout(() => this.dropNextPool(key), ttlMs);
    timer.unref();
    this.nextPools.set(key, { pool, timer });
  }

  private dropNextPool(key: string): void {
    const n = this.nextPools.get(key);
    if (!n) return;
    this.nextPools.delete(key);
    clearTimeout(n.timer);
    n.pool.retire();
  }

  private onRoute(key: string, route: Route | undefined, prev: Route | undefined): void {
    const k = route ?? prev;
    if (prev?.engine === "mysql" && this.mysqlLogins.get(prev.role) === key) this.mysqlLogins.delete(prev.role);
    if (route?.engine === "mysql") this.mysqlLogins.set(route.role, key);
    if (prev?.engine === "redis" && this.redisLogins.get(prev.role) === key) this.redisLogins.delete(prev.role);
    if (route?.engine === "redis") this.redisLogins.set(route.role, key);
    this.log.info({ tenant: k?.tenant, database: k?.database, epoch: route?.epoch, server: route?.server, previousEpoch: prev?.epoch, poolMode: route?.poolMode }, route ? "route loaded" : "route removed");
    const pools = this.pools.get(key);
    for (const [profile, pool] of pools ?? []) {
      if (!route || !samePoolTarget(pool, route)) {
        // Moved (or removed): lend nothing more from the old server; lent connections close on return.
        pool.retire();
        pools!.delete(profile);
      } else {
        pool.resize(this.poolOptions(route));
        this.budgetOf(route);
      }
    }
    const next = this.nextPools.get(key);
    if (next && route && samePoolTarget(next.pool, route)) {
      // Committed where it was announced: the pool opened ahead of the pause serves from now on.
      this.nextPools.delete(key);
      clearTimeout(next.timer);
      next.pool.resize(this.poolOptions(route));
      this.budgetOf(route);
      this.installPool(key, "", next.pool);
    } else if (next && route?.epoch !== prev?.epoch) this.dropNextPool(key);
    if (route && prev && route.epoch !== prev.epoch) this.drains.get(key)?.routeChanged(route.epoch);
  }

  private poolOptions(route: Route): PoolOptions {
    return {
      size: route.poolSize,
      queueTimeoutMs: this.opts.poolQueueTimeoutMs ?? 30_000,
      idleTimeoutMs: this.opts.poolIdleTimeoutMs ?? 600_000,
      connectTimeoutMs: this.opts.connectTimeoutMs ?? 10_000,
    };
  }

  private budgetOf(route: Route): ServerBudget {
    const name = `${route.host}:${route.port}`;
    let b = this.budgets.get(name);
    if (!b) {
      b = new ServerBudget(route.server, route.serverBudget ?? Infinity);
      this.budgets.set(name, b);
    }
    if (route.serverBudget !== undefined) b.limit = route.serverBudget;
    return b;
  }

  /** The transaction-mode pool of a PostgreSQL tenant database's committed route. */
  private pool(key: string, route: Route): PgPool {
    return this.poolFor(key, "", route, pgConnector(route));
  }

  /**
   * The transaction-mode pool of tenant database `key` for clients of `profile` (MySQL; "" for
   * PostgreSQL) on its route; a pool of an older route is retired and replaced. The metrics count
   * the tenant database's pools together.
   */
  private poolFor<C extends PoolConnection, I>(key: string, profile: string, route: Route, connector: () => PoolConnector<C, I>): Pool<C, I> {
    const had = this.pools.get(key)?.get(profile) as Pool<C, I> | undefined;
    if (had && samePoolTarget(had, route)) return had;
    had?.retire();
    return this.installPool(key, profile, this.newPool(key, profile, route, connector));
  }

  private newPool<C extends PoolConnection, I>(key: string, profile: string, route: Route, connector: () => PoolConnector<C, I>): Pool<C, I> {
    const target = { host: route.host, port: route.port, database: route.backendDatabase };
    const name = profile ? `${key}|${profile}` : key;
    return new Pool<C, I>(name, target, route.epoch, this.poolOptions(route), this.budgetOf(route), connector(), (e) =>
      this.log.warn({ key: name, err: e.message }, "pool could not open a server connection"),
    );
  }

  /** `p` becomes the pool of `key` for `profile`; the metrics count the tenant database's pools together. */
  private installPool<P extends Pool<PoolConnection, unknown>>(key: string, profile: string, p: P): P {
    let pools = this.pools.get(key);
    if (!pools) {
      const all = (pools = new Map());
      this.pools.set(key, all);
      const sum = (f: (q: { open: number; lent: number; waiting: number }) => number) => () => {
        let n = 0;
        for (const q of all.values()) n += f(q);
        return n;
      };
      this.stats(key).pool = { open: sum((q) => q.open), lent: sum((q) => q.lent), waiting: sum((q) => q.waiting) };
    }
    pools.set(profile, p);
    return p;
  }

  /** The lease ran out: the coordinator may be gone. Resume on whatever route is committed. */
  private async leaseExpired(d: TenantDrain): Promise<void> {
    const k = this.routeKey(d.key);
    if (!k) return d.resume();
    try {
      await this.follower.reloadRoute(k);
      await this.follower.reloadPause(k); // renewed → pause again with the new lease; gone/expired → unpause
    } catch (e) {
      this.log.warn({ err: (e as Error).message, tenant: k.tenant, database: k.database }, "catalog unreachable at lease expiry; resuming on the last known route");
      this.onUnpause(d.key, "lease_expired");
      return;
    }
    if (d.paused && !this.follower.pauses.has(d.key)) this.onUnpause(d.key, "lease_expired");
  }

  private reportDraining(): void {
    for (const d of this.drains.values()) if (d.paused && !d.drained) this.ack(d, "draining", { ...d.report() });
  }

  private register(s: PgSession): { pid: number; secret: number } {
    for (;;) {
      this.nextSession = (this.nextSession + 1) & ((1 << SESSION_BITS) - 1);
      const pid = (this.follower.ordinal << SESSION_BITS) | this.nextSession;
      if (this.nextSession === 0 || this.sessions.has(pid)) continue;
      this.sessions.set(pid, s);
      return { pid, secret: randomInt(-0x80000000, 0x7fffffff) };
    }
  }

  /** A MySQL connection id: the proxy's ordinal in the high bits, as PostgreSQL sessions' pids. */
  private registerMysql(s: MysqlSession): number {
    for (;;) {
      this.nextMysqlSession = (this.nextMysqlSession + 1) & ((1 << SESSION_BITS) - 1);
      const id = (this.follower.ordinal << SESSION_BITS) | this.nextMysqlSession;
      if (this.nextMysqlSession === 0 || this.mysqlSessions.has(id)) continue;
      this.mysqlSessions.set(id, s);
      return id;
    }
  }

  /**
   * `KILL [QUERY|CONNECTION] <id>` from a MySQL client, `id` a connection id this fleet gave (the
   * handshake's, which clients use): a session here → done here, as its own login on its server;
   * another proxy's → asked of that proxy, as the requester's login. As MySQL: a login may kill
   * only its own sessions (1095), an unknown id is 1094. Returns the error, or undefined for OK.
   */
  private async killMysql(requester: MysqlSession, id: number, what: "query" | "connection"): Promise<ErrPacket | undefined> {
    const ordinal = ordinalOfPid(id);
    if (ordinal === this.follower.ordinal) {
      const s = this.mysqlSessions.get(id);
      if (!s) return errPacket(ER.NO_SUCH_THREAD, `Unknown thread id: ${id}`);
      if (s.user !== requester.user) return errPacket(ER.KILL_DENIED, `You are not owner of thread ${id}`);
      this.log.info({ key: s.key, session: s.no, what, by: requester.no }, "KILL of a MySQL session");
      if (what === "connection") s.killConnection();
      else await s.killQuery();
      return undefined;
    }
    const peer = await this.follower.peer(ordinal);
    if (!peer?.mysqlPort) return errPacket(ER.NO_SUCH_THREAD, `Unknown thread id: ${id}`);
    return requester.askProxy({ host: peer.host, port: peer.mysqlPort }, `KILL ${what.toUpperCase()} ${id}`);
  }

  /** A CancelRequest: ours → cancel on the session's current server; another proxy's → forward it. */
  private async cancel(pid: number, secret: number): Promise<void> {
    const ordinal = ordinalOfPid(pid);
    let target: { host: string; port: number; pid: number; secret: number } | undefined;
    if (ordinal === this.follower.ordinal) {
      const s = this.sessions.get(pid);
      if (!s || s.secret !== secret || !s.backend) return; // as PostgreSQL: silently ignore
      target = { host: s.backend.target.host, port: s.backend.target.port, pid: s.backend.pid, secret: s.backend.secret };
      this.log.info({ tenant: s.tenant, database: s.database, session: s.no }, "cancel request forwarded to the server");
    } else {
      const peer = await this.follower.peer(ordinal);
      if (!peer) return;
      target = { ...peer, pid, secret };
    }
    const sock = net.connect({ host: target.host, port: target.port });
    sock.on("error", (e) => this.log.warn({ err: e.message }, "could not deliver a cancel request"));
    sock.on("connect", () => sock.end(cancelRequest(target.pid, target.secret)));
  }

  /**
   * Stop: accept no new connections; each session is closed (57P01) at its next idle point, so
   * open transactions finish and nothing in flight is cut; after `graceMs` the rest are closed.
   * The proxy stays in the catalog until then (a pause meanwhile still counts it).
   */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    this.server?.close();
    this.mysqlServer?.close();
    this.redisServer?.close();
    clearInterval(this.laneSweep);
    const graceMs = opts.graceMs ?? this.opts.shutdownGraceMs ?? 0;
    const open = () => [...this.sessions.values()];
    const openMysql = () => [...this.mysqlSessions.values()];
    const openRedis = () => [...this.redisSessions];
    const count = () => this.sessions.size + this.mysqlSessions.size + this.redisSessions.size;
    for (const s of open()) s.shutdown();
    for (const s of openMysql()) s.shutdown();
    for (const s of openRedis()) s.shutdown();
    const deadline = Date.now() + graceMs;
    while (count() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (count() > 0) this.log.warn({ sessions: count() }, "grace period over: closing sessions still busy");
    for (const s of open()) s.fatal(SQLSTATE.AdminShutdown, "the proxy is shutting down", "Reconnect: another proxy serves the same address.");
    for (const s of openMysql()) s.fail(ER.SERVER_SHUTDOWN, "the proxy is shutting down; reconnect: another proxy serves the same address");
    for (const s of openRedis()) s.fail("ERR tenantfleet: the proxy is shutting down; reconnect: another proxy serves the same address");
    for (const d of this.drains.values()) d.close();
    for (const pools of this.pools.values()) for (const p of pools.values()) p.retire();
    for (const key of [...this.nextPools.keys()]) this.dropNextPool(key);
    for (const lane of this.redisLanes.values()) lane.close();
    await this.follower.stop({ deregister: true });
    await new Promise<void>((r) => (this.admin ? this.admin.close(() => r()) : r()));
  }
}

/** How a PostgreSQL pool on `route`'s server logs in (the tenant database's login, SCRAM). */
const pgConnector = (route: Route) => () =>
  pgPoolConnector({ host: route.host, port: route.port, database: route.backendDatabase, user: route.role }, parseVerifier(route.scramVerifier));

function samePoolTarget(p: { epoch: number; target: PoolTarget }, r: Route): boolean {
  return p.epoch === r.epoch && p.target.host === r.host && p.target.port === r.port && p.target.database === r.backendDatabase;
}
