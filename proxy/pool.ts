/**
 * Server connections for `transaction` pool mode (DESIGN.md, "Connections and pooling"), for
 * every engine: the wire protocol opens a connection (a `PoolConnector`), the pool lends them.
 *
 * A `Pool` holds the server connections of one tenant database on one server (one route
 * target): at most `size` of them, lent to one client at a time for a transaction (or, outside
 * one, up to the end of a command) and then returned. Clients wait in a FIFO queue when all are
 * lent; a wait longer than the queue timeout fails (the session answers with its protocol's error).
 *
 * A `ServerBudget` caps the connections this proxy opens to one server, over all the tenant
 * databases it holds (its share of the server's `max_connections` less the reserve). A pool that
 * needs a connection while the server is at its budget closes another pool's idle connection, or
 * waits for one to be returned; so the server never answers "too many clients".
 *
 * Connections log in as the tenant database's login with what a client proved in its own login
 * (PostgreSQL: the SCRAM ClientKey; MySQL: SHA1 of the password, which the native exchange
 * reveals to the proxy): the first client to log in lends it to the pool, no password is kept.
 */
import type { Socket } from "node:net";

/** Where a pool's connections go: one tenant database on one server. */
export interface PoolTarget {
  host: string;
  port: number;
  database: string;
}

/** A server connection as the pool sees it. */
export interface PoolConnection {
  readonly isClosed: boolean;
  /** Polite close (the protocol's goodbye). */
  close(): void;
  /** Resolves once the server has let the connection go (or after a timeout). */
  gone(): Promise<void>;
}

/** Resolves once `socket` has closed (the server let the connection go), or after `timeoutMs`. */
export function socketGone(socket: Socket, timeoutMs = 2000): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, timeoutMs);
    t.unref();
    socket.once("close", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** How an engine opens its pool's connections, and when one is fit to lend again. */
export interface PoolConnector<C extends PoolConnection, I> {
  open(credential: Buffer, connectTimeoutMs: number): Promise<C>;
  /** What the server told a new connection at login that new clients are told too (PostgreSQL: its parameters; MySQL: its status). */
  loginInfo(c: C): I;
  /** A returned connection is at rest: no transaction open, nothing pending. */
  atRest(c: C): boolean;
}

export class PoolTimeoutError extends Error {
  override name = "PoolTimeoutError";
  constructor(
    message: string,
    /** The pool when the wait ended, for the log. */
    readonly pool: Record<string, number>,
  ) {
    super(message);
  }
}

/** The pool a client waited on was retired (its tenant database moved): borrow from the new route's pool. */
export class PoolReplacedError extends Error {
  override name = "PoolReplacedError";
  constructor() {
    super("the pool was replaced (the tenant database moved)");
  }
}

/**
 * A client session borrowing from a pool (each engine's session is one): how it tells whether an
 * idle connection fits it as it is, makes one fit, and takes it.
 */
export interface Borrower<C extends PoolConnection, I> {
  /** Set while a connection is on its way (the session holds what the client sends meanwhile). */
  acquiring: boolean;
  /** "closed": the session ended; "held": a pause parked it while it waited; else "ready". */
  borrowState(): "closed" | "held" | "ready";
  /** The connection carries what the session needs (its settings, statements): no round trip. */
  fitsAsIs(c: C): boolean;
  /** Give the connection what the session needs (round trips to its server). */
  fit(c: C): Promise<void>;
  /** The connection is the session's until its transaction ends; `later`: it came after a wait (send what was held). */
  take(c: C, pool: Pool<C, I>, later: boolean): void;
  /** `fit` failed (the connection was closed): end the session with that error. */
  fitFailed(e: Error): void;
  /** No connection came: the queue timeout, or the server refused or was unreachable. */
  noConnection(e: Error, pool: Pool<C, I>): void;
  /** The pool was retired while the session waited: borrow again from the route's new pool. */
  poolReplaced(): void;
}

/**
 * Lend `pool`'s connection to `s`: true when lent at once (an idle one that fits it as it is: no
 * promise on this, the hot path); otherwise one comes later, made to fit, and `s.take` gets it.
 */
export function borrow<C extends PoolConnection, I>(pool: Pool<C, I>, s: Borrower<C, I>): boolean {
  const idle = pool.tryAcquire();
  if (idle && s.fitsAsIs(idle)) {
    s.take(idle, pool, false);
    return true;
  }
  s.acquiring = true;
  (idle ? Promise.resolve(idle) : pool.acquire())
    .then(async (c) => {
      if (s.borrowState() !== "ready") {
        // Closed, or a pause came while waiting: what the session holds waits for the resume.
        s.acquiring = false;
        pool.release(c, true);
        return;
      }
      try {
        await s.fit(c);
      } catch (e) {
        s.acquiring = false;
        pool.release(c, false);
        return s.fitFailed(e as Error);
      }
      s.acquiring = false;
      if (s.borrowState() === "closed") return pool.release(c, true);
      s.take(c, pool, true);
    })
    .catch((e: Error) => {
      s.acquiring = false;
      if (s.borrowState() === "closed") return;
      if (e instanceof PoolReplacedError) return s.poolReplaced();
      s.noConnection(e, pool);
    });
  return false;
}

type Waiter<C> = { resolve(b: C): void; reject(e: Error): void; timer: NodeJS.Timeout | undefined };

/** What the budget asks of the pools on its server. */
interface BudgetMember {
  readonly idleCount: number;
  readonly oldestIdle: number;
  readonly wantsConnection: boolean;
  readonly open: number;
  closeOneIdle(): void;
  grow(): void;
}

/** The connections this proxy has open to one server, over every pool on it. */
export class ServerBudget {
  open = 0;
  readonly pools = new Set<BudgetMember>();
  private readonly waiting: BudgetMember[] = [];

  constructor(
    readonly server: string,
    /** Connections this proxy may open to the server; Infinity when unknown. */
    public limit: number,
  ) {}

  /** Take a slot, closing the longest-idle connection of another pool when at the limit. */
  take(requester: BudgetMember): boolean {
    if (this.open < this.limit) {
      this.open++;
      return true;
    }
    let victim: BudgetMember | undefined;
    for (const p of this.pools) if (p !== requester && p.idleCount > 0 && (!victim || p.oldestIdle < victim.oldestIdle)) victim = p;
    if (!this.waiting.includes(requester)) this.waiting.push(requester);
    // Its slot comes back through give() once the server has let that connection go.
    victim?.closeOneIdle();
    return false;
  }

  /** True when another pool waits for a slot and `p` holds more than an even share of the limit. */
  overShare(p: BudgetMember): boolean {
    if (this.waiting.length === 0) return false; // every transaction's return asks: no allocation on that path
    let others = 0;
    for (const q of this.waiting) if (q !== p && q.wantsConnection) others++;
    if (others === 0) return false;
    return p.open > Math.max(1, Math.floor(this.limit / (others + 1)));
  }

  give(): void {
    this.open--;
    // A pool waiting for a server slot gets the first chance at it.
    while (this.waiting.length > 0 && this.open < this.limit) {
      const p = this.waiting.shift()!;
      if (p.wantsConnection) {
        p.grow();
        return;
      }
    }
  }

  /** Pools with idle connections while another pool waits: ask them to give one up. */
  nudge(): void {
    while (this.waiting.length > 0) {
      const p = this.waiting[0]!;
      if (!p.wantsConnection) {
        this.waiting.shift();
        continue;
      }
      let victim: BudgetMember | undefined;
      for (const q of this.pools) if (q !== p && q.idleCount > 0 && (!victim || q.oldestIdle < victim.oldestIdle)) victim = q;
      if (!victim) return;
      victim.closeOneIdle(); // its slot goes back through give(), to the first waiting pool (p)
      return;
    }
  }
}

export interface PoolOptions {
  size: number;
  /** How long a client waits for a connection before its query fails (PgBouncer: query_wait_timeout). */
  queueTimeoutMs: number;
  connectTimeoutMs: number;
  /** An idle connection unused this long is closed (PgBouncer: server_idle_timeout). */
  idleTimeoutMs: number;
}

export class Pool<C extends PoolConnection, I = unknown> implements BudgetMember {
  private readonly idle: { b: C; since: number }[] = [];
  private readonly queue: Waiter<C>[] = [];
  /** Lent plus being opened. */
  private busy = 0;
  private opening = 0;
  private retired = false;
  private credential: Buffer | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** The first connection's loginInfo (the connector's), once one has opened. */
  info: I | undefined;
  /** Connections lent right now, for the metrics. */
  get lent(): number {
    return this.busy - this.opening;
  }

  constructor(
    readonly key: string,
    readonly target: PoolTarget,
    readonly epoch: number,
    private opts: PoolOptions,
    private readonly budget: ServerBudget,
    private readonly connector: PoolConnector<C, I>,
    private readonly onError: (e: Error) => void,
  ) {
    budget.pools.add(this);
  }

  get size(): number {
    return this.opts.size;
  }

  get idleCount(): number {
    return this.idle.length;
  }

  get oldestIdle(): number {
    return this.idle[0]?.since ?? Infinity;
  }

  get waiting(): number {
    return this.queue.length;
  }

  get wantsConnection(): boolean {
    return !this.retired && this.queue.length > 0 && this.busy < this.opts.size;
  }

  /** Counts for logs and errors. */
  state(): Record<string, number> {
    return { size: this.opts.size, busy: this.busy, opening: this.opening, idle: this.idle.length, waiting: this.queue.length, serverOpen: this.budget.open, serverLimit: this.budget.limit };
  }

  resize(opts: PoolOptions): void {
    this.opts = opts;
    this.serve();
  }

  /** A client proved what logging in as the tenant database's login takes: the pool can log in with it. */
  offerCredential(credential: Buffer): void {
    this.credential ??= credential;
  }

  /**
   * A switch to `next`'s server is coming (announced before the pause): it gets this pool's
   * login credential and opens as many idle connections as this pool holds (within its size and
   * its server's budget), so the transactions released by the resume find connections open.
   */
  prepare(next: Pool<C, I>): void {
    if (this.credential) next.offerCredential(this.credential);
    const want = Math.min(this.open, next.opts.size);
    while (!next.retired && next.credential && next.open < want && next.budget.take(next)) next.openOne();
  }

  /** An idle connection now, if there is one and nobody waits before us (no promise: the hot path). */
  tryAcquire(): C | undefined {
    if (this.retired || this.queue.length > 0) return undefined;
    const b = this.takeIdle();
    if (b) this.busy++;
    return b;
  }

  /** A connection for one transaction; rejects with PoolTimeoutError after the queue timeout. */
  acquire(): Promise<C> {
    if (this.retired) return Promise.reject(new PoolReplacedError());
    const idle = this.takeIdle();
    if (idle) {
      this.busy++;
      return Promise.resolve(idle);
    }
    return new Promise<C>((resolve, reject) => {
      const w: Waiter<C> = { resolve, reject, timer: undefined };
      w.timer = setTimeout(() => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        reject(new PoolTimeoutError(`no server connection for ${this.key} within ${this.opts.queueTimeoutMs} ms: its pool of ${this.opts.size} is busy`, this.state()));
      }, this.opts.queueTimeoutMs);
      w.timer.unref();
      this.queue.push(w);
      this.serve();
    });
  }

  /** Give a connection back. `reusable` false (broken, or holding state) closes it. */
  release(b: C, reusable: boolean): void {
    this.busy--;
    if (!reusable || this.retired || b.isClosed || !this.connector.atRest(b)) {
      this.discard(b);
      this.serve(); // its place can go to a waiting client
      return;
    }
    if (this.budget.overShare(this)) {
      // Another pool on this server waits for a slot and this one holds more than its share:
      // close this connection so that pool can open one (no tenant starves another).
      this.discard(b);
      this.serve();
      return;
    }
    const w = this.queue.shift();
    if (w) {
      clearTimeout(w.timer);
      this.busy++;
      w.resolve(b);
      return;
    }
    this.idle.push({ b, since: Date.now() });
    this.armIdleTimer();
    this.budget.nudge();
  }

  /** The route moved: lend nothing more; connections close as they come back. */
  retire(): void {
    this.retired = true;
    for (const w of this.queue.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new PoolReplacedError());
    }
    for (const { b } of this.idle.splice(0)) this.discard(b);
    clearTimeout(this.idleTimer);
    this.budget.pools.delete(this);
  }

  /**
   * The lent connection leaves the pool for good (its client pinned it): the pool may open another
   * in its place; the connection still counts in the server's budget, which is returned.
   */
  detach(): ServerBudget {
    this.busy--;
    this.serve();
    return this.budget;
  }

  /** A pinned session's new connection after a switch counts in this pool's server budget. */
  budgetForPinned(): ServerBudget {
    this.budget.open++;
    return this.budget;
  }

  /** Server connections held now, idle and lent. */
  get open(): number {
    return this.busy + this.idle.length;
  }

  closeOneIdle(): void {
    const i = this.idle.shift();
    if (i) this.discard(i.b);
  }

  /** Called by the budget when a server slot became free for this pool. */
  grow(): void {
    this.budget.open++;
    this.openOne();
  }

  private takeIdle(): C | undefined {
    while (this.idle.length > 0) {
      const { b } = this.idle.pop()!; // most recently used: warm caches, lets the oldest time out
      if (!b.isClosed) return b;
      this.budget.give();
    }
    return undefined;
  }

  private discard(b: C): void {
    b.close();
    // The slot is free once the server's backend is gone, not when we hang up: until then it still
    // counts in max_connections, and a connection opened in its place could be refused.
    void b.gone().then(() => this.budget.give());
  }

  /** Open connections for waiting clients, within the pool size and the server budget. */
  private serve(): void {
    while (this.queue.length > this.opening && this.busy < this.opts.size && !this.retired) {
      if (!this.credential) return;
      if (!this.budget.take(this)) return;
      this.openOne();
    }
  }

  private openOne(): void {
    this.busy++;
    this.opening++;
    this.connector.open(this.credential!, this.opts.connectTimeoutMs).then(
      (b) => {
        this.opening--;
        this.info ??= this.connector.loginInfo(b);
        this.busy--;
        if (this.retired) {
          this.discard(b);
          return;
        }
        this.busy++;
        this.release(b, true);
        this.serve(); // more clients waiting: take another slot, or queue for one
      },
      (e: Error) => {
        this.opening--;
        this.busy--;
        this.budget.give();
        // The waiters cannot be served: fail the first (the others retry on the next connection).
        const w = this.queue.shift();
        if (w) {
          clearTimeout(w.timer);
          w.reject(e);
        }
        this.onError(e);
        this.serve();
      },
    );
  }

  private armIdleTimer(): void {
    if (this.idleTimer) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      const cutoff = Date.now() - this.opts.idleTimeoutMs;
      while (this.idle.length > 0 && this.idle[0]!.since < cutoff) this.closeOneIdle();
      if (this.idle.length > 0) this.armIdleTimer();
    }, this.opts.idleTimeoutMs);
    this.idleTimer.unref();
  }
}
