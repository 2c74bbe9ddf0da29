/**
 * The coordinator: the side of a cutover the migration engine calls (DESIGN.md step 5).
 *
 *   const c = await Coordinator.connect(catalogConfig);
 *   await c.announce(key, target);                 // optional: proxies log in to the target now
 *   await c.pause(key, { timeoutMs: 60_000 });   // resolves when every live proxy has drained
 *   await c.switch(key, target, epoch);            // the commit point; resolves when all switched
 *   await c.resume(key);                           // held messages flow to the new server
 *
 * Why through the catalog (LISTEN/NOTIFY + proxy heartbeats) and not an admin endpoint per proxy:
 * the catalog is already the commit point and every proxy already follows it, so there is no
 * second channel to secure, no list of proxy addresses for the coordinator to know, and a proxy
 * restarted at any moment reads the pause and the committed route from the same place it reads
 * everything else. "Every live proxy" is every proxy whose heartbeat is fresh; one that stops
 * heartbeating stops being waited for (it has no sessions the coordinator could lose).
 *
 * A pause is a lease. While this coordinator holds it, it renews it; if the coordinator's process
 * dies (a SIGKILLed `pulumi up`), renewals stop and every proxy resumes on the committed route
 * when the lease runs out. A drain that misses its timeout rejects with DrainTimeoutError and
 * keeps the pause: the caller decides (resume to abort, or switch to force: sessions still busy
 * are then closed and their open transactions roll back on the old server).
 */
import { Client, type ClientConfig } from "pg";
import { ANNOUNCEMENT_TTL_MS, CHANNELS, migrateCatalog } from "./schema";
import { clientDatabaseName, commitRoute, type Route, type RouteTarget, type TenantDbKey } from "./routes";

export interface PauseOptions {
  /** How long to wait for every proxy to drain. Default 60 s. */
  timeoutMs?: number;
  /** How long proxies keep the pause if this coordinator disappears. Default 10 s, renewed every third of it. */
  leaseMs?: number;
  /** Who asked (shown in the catalog). */
  requestedBy?: string;
  /**
   * Where the switch will go, if known: proxies then open connections there (with each parked
   * session's state) while the drain completes, so `switch` only swaps them in.
   */
  target?: RouteTarget;
}

export interface ProxyAck {
  proxyId: string;
  phase: string | undefined;
  detail: Record<string, unknown>;
}

export class DrainTimeoutError extends Error {
  override name = "DrainTimeoutError";
  constructor(
    message: string,
    readonly proxies: ProxyAck[],
  ) {
    super(message);
  }
}

export interface PauseResult {
  pauseId: number;
  /** Time from the pause request to the last proxy's drained report. */
  drainedMs: number;
  /** Of it, writing the pause request (before any proxy can see it). */
  requestMs: number;
  proxies: ProxyAck[];
}

interface Held {
  pauseId: number;
  leaseMs: number;
  timer: NodeJS.Timeout;
}

/** How recent a heartbeat must be for a proxy to count as live. */
const LIVE_WINDOW_MS = 5000;

export class Coordinator {
  private readonly held = new Map<string, Held>();
  private wake: (() => void)[] = [];
  /** Acknowledgements as their notifications told them (catalog version 6), by tenant database, pause and proxy. */
  private readonly noted = new Map<string, { phase: string; detail: Record<string, unknown> }>();

  /** Set when the catalog connection failed: every later call rejects with it (connect a new coordinator). */
  private lost: Error | undefined;

  private constructor(private readonly db: Client) {
    const wakeAll = () => {
      const w = this.wake;
      this.wake = [];
      for (const f of w) f();
    };
    db.on("notification", (n) => {
      try {
        const a = JSON.parse(n.payload ?? "{}") as { proxyId?: string; tenant?: string; database?: string; pauseId?: number; phase?: string; detail?: Record<string, unknown> | null };
        // A catalog of version 5 sends no detail: the table is read then (waitFor's timer).
        if (a.proxyId && a.tenant && a.database && a.pauseId !== undefined && a.phase && a.detail) {
          this.noted.set(notedKey(a as TenantDbKey, Number(a.pauseId), a.proxyId), { phase: a.phase, detail: a.detail });
        }
      } catch {
        /* a payload of another shape: the next read of the table has it */
      }
      wakeAll();
    });
    // A catalog that goes away must fail the caller's step, not crash its process. The pauses this
    // coordinator held stop being renewed and lapse on their own (the proxies resume).
    db.on("error", (e) => {
      this.lost = new Error(`lost the control catalog connection: ${e.message}`);
      for (const name of [...this.held.keys()]) void this.stopRenewing(name);
      wakeAll();
    });
  }

  static async connect(config: ClientConfig): Promise<Coordinator> {
    const db = new Client(config);
    await db.connect();
    await migrateCatalog(db);
    await db.query(`listen ${CHANNELS.acks}`);
    // Pauses, their lease renewals and their removal commit without waiting for a disk flush: they
    // only coordinate the living (a catalog that crashes breaks this connection, and the migration
    // fails before any commit; the proxies then find no pause). The route commit is synchronous
    // (switch), and its flush carries everything committed before it.
    await db.query("set synchronous_commit = off");
    return new Coordinator(db);
  }

  /**
   * Readies this connection for a pause of `k` without pausing anything: the first pause request
   * on a new catalog connection loads the tables', the foreign key's and the trigger's caches (and
   * compiles its function), which took most of the time of the request (28 of 81 ms of a Redis
   * cutover's pause, bench:cutover). The same request is made and rolled back: no proxy sees it.
   */
  async warm(k: TenantDbKey): Promise<void> {
    await this.db.query("begin");
    try {
      await this.requestPause(k, 0, "warm-up", undefined);
      await this.acks(k, -1);
    } finally {
      await this.db.query("rollback");
    }
  }

  /**
   * Tell every proxy where the next switch of `k` will go, before pausing it: each logs in there
   * now, once per session, so neither the drain nor the switch waits for a login (the session's
   * state is restored on that connection once it parks). A notification only, nothing stored: a
   * proxy that misses it, or a session that starts later, connects after the drain as before.
   * The connections are dropped if no pause uses them within `ttlMs`.
   */
  async announce(k: TenantDbKey, target: RouteTarget, ttlMs = ANNOUNCEMENT_TTL_MS): Promise<void> {
    await this.notifyControl(k, { op: "ANNOUNCE", target, ttlMs });
  }

  /** Call an announcement off (the move failed before its switch): the proxies close what they opened for it. */
  async withdraw(k: TenantDbKey): Promise<void> {
    await this.notifyControl(k, { op: "WITHDRAW" });
  }

  private async notifyControl(k: TenantDbKey, what: Record<string, unknown>): Promise<void> {
    await this.db.query(`select pg_notify($1, $2)`, [CHANNELS.control, JSON.stringify({ tenant: k.tenant, database: k.database, ...what })]);
  }

  /** The pause row of `k`, replacing any earlier one; its id. */
  private async requestPause(k: TenantDbKey, leaseMs: number, requestedBy: string, target: RouteTarget | undefined): Promise<number> {
    await this.db.query(`delete from tenantfleet.pauses where tenant = $1 and database = $2`, [k.tenant, k.database]);
    const r = await this.db.query<{ pause_id: string }>(
      `insert into tenantfleet.pauses (tenant, database, lease_until, requested_by, target)
       values ($1, $2, now() + $3 * interval '1 millisecond', $4, $5) returning pause_id`,
      [k.tenant, k.database, leaseMs, requestedBy, target ? JSON.stringify(target) : null],
    );
    return Number(r.rows[0]!.pause_id);
  }

  async pause(k: TenantDbKey, opts: PauseOptions = {}): Promise<PauseResult> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const leaseMs = opts.leaseMs ?? 10_000;
    const name = clientDatabaseName(k);
    const requested = Date.now();
    await this.stopRenewing(name);
    const pauseId = await this.requestPause(k, leaseMs, opts.requestedBy ?? "coordinator", opts.target);
    const timer = setInterval(() => {
      this.db
        .query(`update tenantfleet.pauses set lease_until = now() + $2 * interval '1 millisecond' where pause_id = $1`, [pauseId, leaseMs])
        .catch(() => undefined);
    }, Math.max(50, Math.floor(leaseMs / 3)));
    timer.unref();
    this.held.set(name, { pauseId, leaseMs, timer });
    const requestMs = Date.now() - requested;
    const proxies = await this.waitFor(k, pauseId, ["drained", "switched"], timeoutMs, `drain of ${name}`);
    return { pauseId, drainedMs: Date.now() - requested, requestMs, proxies };
  }

  /**
   * Commit `target` as the route of `k` at `epoch` (the previous epoch + 1) and wait until every
   * live proxy has moved its parked sessions there. Must be called while paused.
   */
  async switch(k: TenantDbKey, target: RouteTarget, epoch: number, opts: { timeoutMs?: number; afterCommit?: () => Promise<void> } = {}): Promise<{ route: Route; proxies: ProxyAck[] }> {
    const name = clientDatabaseName(k);
    const h = this.held.get(name);
    if (!h) throw new Error(`switch of ${name} without a pause held by this coordinator: pause first`);
    await this.db.query("begin");
    let route: Route;
    try {
      await this.db.query("set local synchronous_commit = on");
      route = await commitRoute(this.db, k, target, epoch);
      await this.db.query("commit");
    } catch (e) {
      await this.db.query("rollback").catch(() => undefined);
      throw e;
    }
    await opts.afterCommit?.();
    const proxies = await this.waitFor(k, h.pauseId, ["switched"], opts.timeoutMs ?? 30_000, `switch of ${name}`, epoch);
    return { route, proxies };
  }

  /** Lift the pause; resolves when every live proxy has released its held messages. */
  async resume(k: TenantDbKey, opts: { timeoutMs?: number } = {}): Promise<ProxyAck[]> {
    const name = clientDatabaseName(k);
    const h = this.held.get(name);
    await this.stopRenewing(name);
    const r = await this.db.query<{ pause_id: string }>(`delete from tenantfleet.pauses where tenant = $1 and database = $2 returning pause_id`, [k.tenant, k.database]);
    const pauseId = h?.pauseId ?? Number(r.rows[0]?.pause_id ?? NaN);
    if (Number.isNaN(pauseId)) return [];
    // Only proxies that took part in this pause have anything to release (one started after the
    // lease ran out never saw it).
    return this.waitFor(k, pauseId, ["resumed"], opts.timeoutMs ?? 10_000, `resume of ${name}`, undefined, true);
  }

  private async stopRenewing(name: string): Promise<void> {
    const h = this.held.get(name);
    if (h) clearInterval(h.timer);
    this.held.delete(name);
  }

  /** Acknowledgements of every live proxy for this pause. */
  async acks(k: TenantDbKey, pauseId: number): Promise<ProxyAck[]> {
    const r = await this.db.query<{ proxy_id: string; phase: string | null; detail: Record<string, unknown> | null }>(
      `select p.proxy_id, a.phase, a.detail
       from tenantfleet.proxies p
       left join tenantfleet.proxy_acks a on a.proxy_id = p.proxy_id and a.tenant = $1 and a.database = $2 and a.pause_id = $3
       where p.heartbeat_at > now() - $4 * interval '1 millisecond'
       order by p.proxy_id`,
      [k.tenant, k.database, pauseId, LIVE_WINDOW_MS],
    );
    return r.rows.map((row) => ({ proxyId: row.proxy_id, phase: row.phase ?? undefined, detail: row.detail ?? {} }));
  }

  /**
   * Until every live proxy has acknowledged one of `phases` (at `epoch`) for this pause. The
   * acknowledgements are read once, then followed by their notifications (a read of the table per
   * round trip was most of a pause's drain); the table is read again at most every 250 ms without
   * news, which also notices proxies that came or went.
   */
  private async waitFor(k: TenantDbKey, pauseId: number, phases: string[], timeoutMs: number, what: string, epoch?: number, participantsOnly = false): Promise<ProxyAck[]> {
    const deadline = Date.now() + timeoutMs;
    let read: ProxyAck[] | undefined;
    for (;;) {
      if (this.lost) throw this.lost;
      const wake = new Promise<void>((r) => this.wake.push(r));
      read ??= await this.acks(k, pauseId);
      const acks = read
        .map((a) => {
          const n = this.noted.get(notedKey(k, pauseId, a.proxyId));
          return n ? { ...a, phase: n.phase, detail: n.detail } : a;
        })
        .filter((a) => !participantsOnly || a.phase !== undefined);
      const done = acks.every((a) => a.phase && phases.includes(a.phase) && (epoch === undefined || Number(a.detail.epoch) === epoch));
      if (done) return acks;
      const left = deadline - Date.now();
      if (left <= 0) {
        const waiting = acks.filter((a) => !a.phase || !phases.includes(a.phase));
        throw new DrainTimeoutError(
          `${what} did not finish within ${timeoutMs} ms: ${waiting.map((a) => `${a.proxyId} is ${a.phase ?? "silent"} ${JSON.stringify(a.detail)}`).join("; ")}`,
          acks,
        );
      }
      let t: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([wake.then(() => false), new Promise<boolean>((r) => (t = setTimeout(() => r(true), Math.min(left, 250))))]);
      clearTimeout(t);
      if (timedOut) read = undefined;
    }
  }

  async close(): Promise<void> {
    for (const name of [...this.held.keys()]) await this.stopRenewing(name);
    await this.db.end().catch(() => undefined);
  }
}

const notedKey = (k: TenantDbKey, pauseId: number, proxyId: string) => `${k.tenant}\0${k.database}\0${pauseId}\0${proxyId}`;
