/**
 * Per tenant database drain: the proxy-side half of a cutover (DESIGN.md, step 5).
 *
 * `pause` holds new queries for one tenant database (never refuses them), lets queries in flight
 * and open transactions finish, and reports *drained* once every session is parked at a message
 * boundary. `resume` releases the held messages in order, on whatever route is committed then.
 * A pause is a lease: when it runs out with no resume, the proxy re-reads the catalog and resumes
 * on the committed route (the coordinator that paused may be gone). Nothing here touches other
 * tenant databases: each has its own TenantDrain.
 */

export type DrainStep = "open" | "paused";

/** What a drain needs from a session (the PostgreSQL session implements it). */
export interface DrainMember {
  /** Parked at a message boundary with nothing in flight and no state that cannot move. */
  readonly parked: boolean;
  /** Epoch of the route the member's server connection belongs to. */
  readonly epoch: number;
  /** Why the session is not parked yet, for the drain report. */
  readonly holdup: "in_flight" | "transaction" | "unmovable_state" | "checking" | undefined;
  /** The drain just paused: park when idle. */
  pause(): void;
  /** The drain opened again: switch if the route moved, then release held messages. */
  resume(): void;
  /** The committed route changed while paused: move to it now if parked. */
  routeChanged(): void;
  /** Every member is parked: open connections to the announced target now (after the drain, so as not to slow it). */
  drained?(): void;
  /** A switch to `target` is coming: log in there ahead of the pause (kept for `ttlMs` at most). */
  announced?(target: NonNullable<TenantDrain["target"]>, ttlMs: number): void;
  /** The announcement was called off: close what was opened for it. */
  withdrawn?(): void;
}

export interface DrainReport {
  sessions: number;
  parked: number;
  inFlight: number;
  inTransaction: number;
  unmovableState: number;
}

export class TenantDrain {
  step: DrainStep = "open";
  pauseId: number | undefined;
  /** Where the coordinator said it will switch to (parked sessions pre-open connections there). */
  target: { host: string; port: number; backendDatabase: string } | undefined;
  pausedAt = 0;
  readonly members = new Set<DrainMember>();
  private openWaiters: (() => void)[] = [];
  private leaseTimer: NodeJS.Timeout | undefined;
  private reportedDrained = false;
  private reportedProgress = "";

  constructor(
    readonly key: string,
    private readonly events: {
      drained(drain: TenantDrain): void;
      /** Still draining, and what holds it up changed (a session parked, or was found holding state that cannot move). */
      progress(drain: TenantDrain): void;
      switched(drain: TenantDrain, epoch: number): void;
      leaseExpired(drain: TenantDrain): void;
    },
  ) {}

  get paused(): boolean {
    return this.step === "paused";
  }

  join(m: DrainMember): void {
    this.members.add(m);
    if (this.paused) m.pause();
  }

  leave(m: DrainMember): void {
    this.members.delete(m);
    this.check();
  }

  /** Pause (or renew the lease of the current pause). */
  pause(pauseId: number, leaseMs: number, target?: TenantDrain["target"]): void {
    this.setLease(leaseMs);
    this.target = target;
    if (this.paused && this.pauseId === pauseId) return;
    this.step = "paused";
    this.pauseId = pauseId;
    this.pausedAt = Date.now();
    this.reportedDrained = false;
    this.reportedProgress = "";
    for (const m of this.members) m.pause();
    this.check();
  }

  /** The coordinator announced where the next switch goes (before pausing). */
  announce(target: NonNullable<TenantDrain["target"]>, ttlMs: number): void {
    for (const m of this.members) m.announced?.(target, ttlMs);
  }

  /** The coordinator called its announcement off. */
  withdraw(): void {
    for (const m of this.members) m.withdrawn?.();
  }

  resume(): void {
    clearTimeout(this.leaseTimer);
    this.leaseTimer = undefined;
    if (!this.paused) return;
    this.step = "open";
    this.pauseId = undefined;
    this.target = undefined;
    this.targetEpoch = undefined;
    for (const m of this.members) m.resume();
    const waiters = this.openWaiters;
    this.openWaiters = [];
    for (const w of waiters) w();
  }

  /** The committed route is now `epoch`: parked members move; `switched` fires once all are there. */
  routeChanged(epoch: number): void {
    if (this.paused) this.targetEpoch = epoch;
    for (const m of this.members) m.routeChanged();
    this.check();
  }

  private targetEpoch: number | undefined;

  /** New connections wait here before they open a backend connection. */
  waitOpen(): Promise<void> {
    if (!this.paused) return Promise.resolve();
    return new Promise((r) => this.openWaiters.push(r));
  }

  /** Sessions call this whenever they park or unpark. */
  check(): void {
    if (!this.paused) return;
    if (!this.drained) {
      // While the members move to a committed route, the coordinator waits for "switched" only.
      if (this.targetEpoch !== undefined) return;
      const progress = JSON.stringify(this.report());
      if (progress !== this.reportedProgress) {
        this.reportedProgress = progress;
        this.events.progress(this);
      }
      return;
    }
    if (!this.reportedDrained) {
      this.reportedDrained = true;
      this.events.drained(this);
      for (const m of this.members) m.drained?.();
    }
    const target = this.targetEpoch;
    if (target === undefined) return;
    for (const m of this.members) if (m.epoch !== target) return;
    this.targetEpoch = undefined;
    this.events.switched(this, target);
  }

  get drained(): boolean {
    if (!this.paused) return false;
    for (const m of this.members) if (!m.parked) return false;
    return true;
  }

  report(): DrainReport {
    const r: DrainReport = { sessions: this.members.size, parked: 0, inFlight: 0, inTransaction: 0, unmovableState: 0 };
    for (const m of this.members) {
      if (m.parked) r.parked++;
      else if (m.holdup === "transaction") r.inTransaction++;
      else if (m.holdup === "unmovable_state") r.unmovableState++;
      else r.inFlight++;
    }
    return r;
  }

  private setLease(ms: number): void {
    clearTimeout(this.leaseTimer);
    this.leaseTimer = setTimeout(() => this.events.leaseExpired(this), Math.max(0, ms));
    this.leaseTimer.unref();
  }

  close(): void {
    clearTimeout(this.leaseTimer);
  }
}
