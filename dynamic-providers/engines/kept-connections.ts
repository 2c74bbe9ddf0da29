/**
 * Admin connections a migration keeps, one per server, for the calls it makes while the tenant is
 * paused (lag, verify, promotion): no login inside the pause. A connection whose call fails is
 * dropped, unless it is still healthy (an error reply on a working connection), and the next call
 * opens another.
 */
export class KeptConnections<S, C> {
  private readonly kept = new Map<S, Promise<C>>();

  constructor(
    private readonly conn: {
      open(s: S): Promise<C>;
      /** Still usable after a failed call (default: never). */
      healthy?(c: C): boolean;
      destroy(c: C): void;
      end(c: C): Promise<unknown> | void;
    },
  ) {}

  async on<T>(s: S, fn: (c: C) => Promise<T>): Promise<T> {
    let p = this.kept.get(s);
    if (!p) {
      p = this.conn.open(s);
      this.kept.set(s, p);
      p.catch(() => this.kept.delete(s));
    }
    const c = await p;
    try {
      return await fn(c);
    } catch (e) {
      if (!this.conn.healthy?.(c)) {
        this.kept.delete(s);
        this.conn.destroy(c);
      }
      throw e;
    }
  }

  async closeAll(): Promise<void> {
    const kept = [...this.kept.values()];
    this.kept.clear();
    await Promise.all(kept.map((p) => p.then((c) => this.conn.end(c), () => undefined)));
  }
}
