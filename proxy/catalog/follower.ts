/**
 * The proxy's side of the control catalog: registers this proxy (heartbeat, cancel ordinal),
 * keeps the routes and pauses in memory, follows changes by LISTEN/NOTIFY with a periodic re-read
 * as a fallback, reconnects when the catalog goes away, and writes the proxy's acknowledgements.
 * While the catalog is unreachable the proxy keeps serving on the routes it knows.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { Client, Pool, type ClientConfig } from "pg";
import { ANNOUNCEMENT_TTL_MS, CHANNELS, migrateCatalog } from "./schema";
import { keyString, loadRoutes, loadRoute, rowToRoute, type Route, type RouteTarget, type TenantDbKey } from "./routes";

interface AckWrite {
  k: TenantDbKey;
  pauseId: number;
  phase: string;
  detail: Record<string, unknown>;
}

export interface FollowerOptions {
  catalog: ClientConfig;
  proxyId: string;
  log: Logger;
  heartbeatMs?: number;
  reloadMs?: number;
}

export interface ActivePause {
  pauseId: number;
  remainingMs: number;
  /** Where the coordinator means to switch to, when it said so at pause time. */
  target?: RouteTarget;
}

type PauseRow = { pause_id: string; remaining_ms: number; target: RouteTarget | null };
const toPause = (r: PauseRow): ActivePause => ({ pauseId: Number(r.pause_id), remainingMs: r.remaining_ms, ...(r.target ? { target: r.target } : {}) });

export interface FollowerEvents {
  route: [key: string, route: Route | undefined, previous: Route | undefined];
  pause: [key: string, pause: ActivePause];
  /** The coordinator named the next switch's target ahead of a pause (Coordinator.announce). */
  announce: [key: string, target: RouteTarget, ttlMs: number];
  /** The announcement was called off (Coordinator.withdraw). */
  withdraw: [key: string];
  unpause: [key: string];
  heartbeat: [];
}

/** Another proxy of the fleet, as it registered: where its PostgreSQL (and MySQL) listener is. */
export interface Peer {
  proxyId: string;
  host: string;
  port: number;
  mysqlPort?: number;
}

export class CatalogFollower extends EventEmitter<FollowerEvents> {
  readonly routes = new Map<string, Route>();
  readonly pauses = new Map<string, ActivePause>();
  readonly peers = new Map<number, Peer>();
  ordinal = 0;
  connected = false;
  private pool: Pool;
  private listener: Client | undefined;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  private readonly log: Logger;

  constructor(private readonly opts: FollowerOptions) {
    super();
    this.log = opts.log.child({ component: "catalog" });
    this.pool = new Pool({ ...opts.catalog, max: 3, connectionTimeoutMillis: 5000 });
    this.pool.on("error", (e) => this.log.warn({ err: e.message }, "catalog pool connection error"));
    // What a proxy writes (its acknowledgements, heartbeats, its row) coordinates the living: none
    // of it needs to survive a crash of the catalog, so no commit of it waits for a disk flush (a
    // pause waits on every acknowledgement). Route commits, the durable part, are the coordinator's.
    this.pool.on("connect", (c) => void c.query("set synchronous_commit = off").catch(() => undefined));
  }

  /** Where other proxies reach this one (forwarded CancelRequests) and its admin endpoint. */
  private address: { advertise: { host: string; port: number; mysqlPort?: number }; adminUrl: string } | undefined;

  /** Set once the listeners are bound (port 0 picks a free port), before start(). */
  setAddress(advertise: { host: string; port: number; mysqlPort?: number }, adminUrl: string): void {
    this.address = { advertise, adminUrl };
  }

  async start(): Promise<void> {
    const c = await this.pool.connect();
    try {
      const applied = await migrateCatalog(c);
      if (applied.length) this.log.info({ applied }, "control catalog migrated");
    } finally {
      c.release();
    }
    await this.register();
    await this.listen();
    await this.reloadAll();
    const hb = setInterval(() => void this.heartbeat(), this.opts.heartbeatMs ?? 1000);
    const rl = setInterval(() => void this.reloadAll().catch((e: Error) => this.log.warn({ err: e.message }, "catalog re-read failed")), this.opts.reloadMs ?? 10_000);
    this.timers.push(hb, rl);
  }

  private async register(): Promise<void> {
    if (!this.address) throw new Error("CatalogFollower.setAddress must be called before start()");
    const { advertise, adminUrl } = this.address;
    const c = await this.pool.connect();
    try {
      await c.query("begin");
      await c.query("select pg_advisory_xact_lock(hashtext('tenantfleet.proxies.ordinal'))");
      // Proxies silent for a day are gone: free their ordinals.
      await c.query("delete from tenantfleet.proxies where heartbeat_at < now() - interval '1 day' and proxy_id <> $1", [this.opts.proxyId]);
      const r = await c.query<{ ordinal: number }>(
        `insert into tenantfleet.proxies (proxy_id, ordinal, host, port, admin_url, mysql_port)
         values ($1, (select min(o) from generate_series(1, 2047) o where o not in (select ordinal from tenantfleet.proxies)), $2, $3, $4, $5)
         on conflict (proxy_id) do update set host = excluded.host, port = excluded.port, admin_url = excluded.admin_url, mysql_port = excluded.mysql_port,
           started_at = now(), heartbeat_at = now()
         returning ordinal`,
        [this.opts.proxyId, advertise.host, advertise.port, adminUrl, advertise.mysqlPort ?? null],
      );
      await c.query("commit");
      this.ordinal = r.rows[0]!.ordinal;
    } catch (e) {
      await c.query("rollback").catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }

  private async listen(): Promise<void> {
    const l = new Client(this.opts.catalog);
    l.on("error", (e) => this.lost(e));
    l.on("end", () => this.lost(new Error("catalog connection ended")));
    l.on("notification", (n) => this.notified(n.channel, n.payload ?? "{}"));
    await l.connect();
    for (const ch of Object.values(CHANNELS)) if (ch !== CHANNELS.acks) await l.query(`listen ${ch}`);
    this.listener = l;
    this.connected = true;
  }

  private lost(e: Error): void {
    if (this.stopped || !this.listener) return;
    this.listener = undefined;
    this.connected = false;
    this.log.warn({ err: e.message }, "lost the catalog connection; serving on known routes and reconnecting");
    const retry = async (delay: number): Promise<void> => {
      if (this.stopped) return;
      try {
        await this.listen();
        await this.register();
        await this.reloadAll();
        this.log.info("catalog connection restored");
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, "catalog still unreachable");
        setTimeout(() => void retry(Math.min(delay * 2, 5000)), delay).unref();
      }
    };
    setTimeout(() => void retry(250), 100).unref();
  }

  private notified(channel: string, payload: string): void {
    let p: { tenant?: string; database?: string };
    try {
      p = JSON.parse(payload);
    } catch {
      return;
    }
    if (!p.tenant || !p.database) return;
    const k = { tenant: p.tenant, database: p.database };
    // A pause's notification (catalog version 6) says all a proxy needs: no read back.
    if (channel === CHANNELS.control) {
      const n = p as { pauseId?: number; op?: string; remainingMs?: number | null; target?: RouteTarget | null; ttlMs?: number };
      if (n.op === "ANNOUNCE") {
        if (n.target) this.emit("announce", keyString(k), n.target, Number(n.ttlMs ?? ANNOUNCEMENT_TTL_MS));
        return;
      }
      if (n.op === "WITHDRAW") return void this.emit("withdraw", keyString(k));
      if (n.op === "DELETE" && n.pauseId !== undefined) {
        if (this.pauses.get(keyString(k))?.pauseId === Number(n.pauseId)) this.setPause(keyString(k), undefined);
        return;
      }
      if ((n.op === "INSERT" || n.op === "UPDATE") && n.pauseId !== undefined && typeof n.remainingMs === "number") {
        return this.setPause(keyString(k), { pauseId: Number(n.pauseId), remainingMs: n.remainingMs, ...(n.target ? { target: n.target } : {}) });
      }
    }
    // A route's notification (catalog version 7) carries the row: no read back either.
    const row = (p as { route?: Record<string, unknown> | null }).route;
    if (channel === CHANNELS.routes && row && typeof row === "object") return this.setRoute(keyString(k), rowToRoute(row));
    const work = channel === CHANNELS.routes ? this.reloadRoute(k) : this.reloadPause(k);
    work.catch((e: Error) => this.log.warn({ err: e.message, tenant: k.tenant, database: k.database }, "catalog read after a notification failed"));
  }

  async reloadRoute(k: TenantDbKey): Promise<void> {
    const c = await this.pool.connect();
    try {
      this.setRoute(keyString(k), await loadRoute(c, k));
    } finally {
      c.release();
    }
  }

  private setRoute(key: string, route: Route | undefined): void {
    const prev = this.routes.get(key);
    if (route) this.routes.set(key, route);
    else this.routes.delete(key);
    if (prev?.epoch !== route?.epoch || prev?.host !== route?.host || prev?.port !== route?.port || prev?.scramVerifier !== route?.scramVerifier || !prev !== !route ||
      prev?.poolMode !== route?.poolMode || prev?.poolSize !== route?.poolSize || prev?.serverBudget !== route?.serverBudget) {
      this.emit("route", key, route, prev);
    }
  }

  /** Re-read one pause; emits pause (active, possibly renewed) or unpause (gone or expired). */
  async reloadPause(k: TenantDbKey): Promise<void> {
    const r = await this.pool.query<PauseRow>(
      `select pause_id, greatest(0, extract(epoch from lease_until - now()) * 1000)::int as remaining_ms, target
       from tenantfleet.pauses where tenant = $1 and database = $2`,
      [k.tenant, k.database],
    );
    this.setPause(keyString(k), r.rows[0] ? toPause(r.rows[0]) : undefined);
  }

  private setPause(key: string, p: ActivePause | undefined): void {
    if (p && p.remainingMs > 0) {
      this.pauses.set(key, p);
      this.emit("pause", key, p);
    } else if (this.pauses.delete(key) || p) {
      this.emit("unpause", key);
    }
  }

  async reloadAll(): Promise<void> {
    const c = await this.pool.connect();
    try {
      const routes = await loadRoutes(c);
      const seen = new Set<string>();
      for (const r of routes) {
        const key = keyString(r);
        seen.add(key);
        this.setRoute(key, r);
      }
      for (const key of [...this.routes.keys()]) if (!seen.has(key)) this.setRoute(key, undefined);
      const pauses = await c.query<PauseRow & { tenant: string; database: string }>(
        `select tenant, database, pause_id, greatest(0, extract(epoch from lease_until - now()) * 1000)::int as remaining_ms, target from tenantfleet.pauses`,
      );
      const active = new Set<string>();
      for (const p of pauses.rows) {
        const key = keyString(p);
        if (p.remaining_ms > 0) active.add(key);
        const known = this.pauses.get(key);
        if (!known || known.pauseId !== Number(p.pause_id) || p.remaining_ms <= 0) this.setPause(key, toPause(p));
      }
      for (const key of [...this.pauses.keys()]) if (!active.has(key)) this.setPause(key, undefined);
      await this.loadPeers(c);
    } finally {
      c.release();
    }
  }

  private async loadPeers(c: { query: Pool["query"] }): Promise<void> {
    const r = await c.query<{ proxy_id: string; ordinal: number; host: string; port: number; mysql_port: number | null }>(`select proxy_id, ordinal, host, port, mysql_port from tenantfleet.proxies`);
    this.peers.clear();
    for (const p of r.rows) this.peers.set(p.ordinal, { proxyId: p.proxy_id, host: p.host, port: p.port, ...(p.mysql_port ? { mysqlPort: p.mysql_port } : {}) });
  }

  private async heartbeat(): Promise<void> {
    try {
      const r = await this.pool.query(`update tenantfleet.proxies set heartbeat_at = now() where proxy_id = $1`, [this.opts.proxyId]);
      if (r.rowCount === 0) await this.register(); // someone swept us: come back
      this.emit("heartbeat");
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, "heartbeat failed");
    }
  }

  async peer(ordinal: number): Promise<Peer | undefined> {
    if (!this.peers.has(ordinal)) await this.loadPeers(this.pool).catch(() => undefined);
    return this.peers.get(ordinal);
  }

  /** Acknowledgements being written, by tenant database, with the one to write next. */
  private readonly acking = new Map<string, { latest: AckWrite | undefined; done: Promise<void> }>();

  /**
   * Record this proxy's progress on a pause (the coordinator waits on these). One write at a time
   * per tenant database, in order; the row holds only the latest phase, so acknowledgements made
   * while one is being written replace each other and only the last is written (a switch's
   * progress reports no longer queue in front of its "switched").
   */
  ack(k: TenantDbKey, pauseId: number, phase: string, detail: Record<string, unknown> = {}): Promise<void> {
    const key = keyString(k);
    const write: AckWrite = { k, pauseId, phase, detail };
    const busy = this.acking.get(key);
    if (busy) {
      busy.latest = write;
      return busy.done;
    }
    const entry: { latest: AckWrite | undefined; done: Promise<void> } = { latest: write, done: Promise.resolve() };
    this.acking.set(key, entry);
    entry.done = (async () => {
      try {
        while (entry.latest) {
          const w = entry.latest;
          entry.latest = undefined;
          try {
            await this.writeAck(w.k, w.pauseId, w.phase, w.detail);
          } catch (e) {
            if (!entry.latest) throw e; // a later one replaces it; else the caller hears
          }
        }
      } finally {
        this.acking.delete(key);
      }
    })();
    return entry.done;
  }

  private async writeAck(k: TenantDbKey, pauseId: number, phase: string, detail: Record<string, unknown>): Promise<void> {
    await this.pool.query(
      `insert into tenantfleet.proxy_acks (proxy_id, tenant, database, pause_id, phase, detail) values ($1, $2, $3, $4, $5, $6)
       on conflict (proxy_id, tenant, database) do update set pause_id = excluded.pause_id, phase = excluded.phase, detail = excluded.detail, at = now()`,
      [this.opts.proxyId, k.tenant, k.database, pauseId, phase, JSON.stringify(detail)],
    );
  }

  async stop(opts: { deregister: boolean }): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (opts.deregister) await this.pool.query(`delete from tenantfleet.proxies where proxy_id = $1`, [this.opts.proxyId]).catch(() => undefined);
    await this.listener?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }
}
