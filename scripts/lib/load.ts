/**
 * A load generator for one tenant database, through the proxies (the e2e test and
 * `npm run bench:cutover` use it). Each client connects to one of the given endpoints in turn and
 * loops over a mix a real application sends:
 *
 * - an insert through a named prepared statement, carrying a client-side id (client × 1e9 + seq);
 * - a read of its own rows (simple protocol) that must count every insert acknowledged so far;
 * - a multi-statement transaction: two inserts and a counter update, committed together.
 *
 * Every acknowledged id is remembered, so a test can assert that exactly those rows exist on the
 * final server. Every error is kept with its SQLSTATE; every operation's latency is kept with its
 * start time, so the longest stall (and when it happened) is known.
 */
import { Client, type ClientConfig } from "pg";

export const LOAD_TABLE = "load_items";

export interface LoadOptions {
  /** One entry per proxy; client i connects to endpoints[i % n]. */
  endpoints: ClientConfig[];
  clients: number;
  /** Total inserts per second across clients (each op of the mix inserts 1 or 2 rows); unset: as fast as they go. */
  writesPerSecond?: number;
  /** Which part of the mix to run; default all three. */
  mix?: Array<"insert" | "read" | "transaction">;
  /** Payload bytes per row. Default 64. */
  payloadBytes?: number;
}

export interface LoadError {
  client: number;
  op: string;
  code?: string;
  message: string;
  at: number;
}

export interface LoadReport {
  ops: number;
  acknowledged: number;
  errors: LoadError[];
  durationMs: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** The longest operation: when it started (ms since epoch) and how long it took. */
  longest: { at: number; ms: number; op: string };
}

/** Create the load's tables in a tenant database (run once, through the proxy or directly). */
export async function prepareLoadTables(config: ClientConfig): Promise<void> {
  const c = new Client(config);
  await c.connect();
  try {
    await c.query(`create table if not exists ${LOAD_TABLE} (id bigint primary key, client int not null, seq int not null, payload text, created_at timestamptz default now());
      create table if not exists load_counters (client int primary key, n bigint not null default 0);
      create sequence if not exists load_tx_seq`);
  } finally {
    await c.end();
  }
}

export class LoadGenerator {
  private readonly acked = new Set<bigint>();
  private readonly errors: LoadError[] = [];
  /** Every operation: when it started (ms since epoch) and how long it took. */
  private readonly samples: Array<{ at: number; ms: number }> = [];
  private longest = { at: 0, ms: 0, op: "" };
  private running = false;
  private loops: Promise<void>[] = [];
  private started = 0;
  private ops = 0;

  constructor(private readonly opts: LoadOptions) {}

  start(): void {
    this.running = true;
    this.started = Date.now();
    for (let i = 0; i < this.opts.clients; i++) this.loops.push(this.client(i + 1));
  }

  /** Ids of every insert the database acknowledged. */
  acknowledgedIds(): bigint[] {
    return [...this.acked];
  }

  /** The longest operation among those that started within [from, to] (ms since epoch). */
  maxLatencyBetween(from: number, to: number): number {
    return longestStartedBetween(this.samples, from, to);
  }

  async stop(): Promise<LoadReport> {
    this.running = false;
    await Promise.all(this.loops);
    return this.report();
  }

  report(): LoadReport {
    const sorted = this.samples.map((x) => x.ms).sort((a, b) => a - b);
    const q = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]! : 0);
    return {
      ops: this.ops,
      acknowledged: this.acked.size,
      errors: [...this.errors],
      durationMs: Date.now() - this.started,
      latencyMs: { p50: round(q(0.5)), p99: round(q(0.99)), max: round(sorted[sorted.length - 1] ?? 0) },
      longest: { ...this.longest, ms: round(this.longest.ms) },
    };
  }

  private async client(n: number): Promise<void> {
    const { endpoints, clients } = this.opts;
    const mix = this.opts.mix ?? ["insert", "read", "transaction"];
    const payload = "x".repeat(this.opts.payloadBytes ?? 64);
    const c = new Client({ ...endpoints[(n - 1) % endpoints.length]!, application_name: `load-${n}` });
    c.on("error", (e) => this.errors.push({ client: n, op: "connection", code: (e as { code?: string }).code, message: e.message, at: Date.now() }));
    try {
      await c.connect();
    } catch (e) {
      this.errors.push({ client: n, op: "connect", code: (e as { code?: string }).code, message: (e as Error).message, at: Date.now() });
      return;
    }
    let seq = 0;
    let mine = 0;
    // Pacing: each client's share of the total rate, with the mix's average rows per op.
    const rowsPerOp = mix.reduce((s, m) => s + (m === "insert" ? 1 : m === "transaction" ? 2 : 0), 0) / mix.length;
    const interval = this.opts.writesPerSecond ? (1000 * clients * rowsPerOp) / this.opts.writesPerSecond : 0;
    let next = Date.now();
    try {
      for (let i = 0; this.running; i++) {
        const op = mix[i % mix.length]!;
        const t0 = performance.now();
        const at = Date.now();
        try {
          if (op === "insert") {
            const id = BigInt(n) * 1_000_000_000n + BigInt(++seq);
            await c.query({ name: "load-insert", text: `insert into ${LOAD_TABLE} (id, client, seq, payload) values ($1, $2, $3, $4)`, values: [id.toString(), n, seq, payload] });
            this.acked.add(id);
            mine++;
          } else if (op === "read") {
            const r = await c.query(`select count(*)::int as n from ${LOAD_TABLE} where client = ${n}`);
            if (r.rows[0].n !== mine) {
              this.errors.push({ client: n, op, message: `read ${r.rows[0].n} of my rows, ${mine} were acknowledged`, at });
            }
          } else {
            const a = BigInt(n) * 1_000_000_000n + BigInt(++seq);
            const b = BigInt(n) * 1_000_000_000n + BigInt(++seq);
            await c.query("begin");
            try {
              await c.query({ name: "load-insert", text: `insert into ${LOAD_TABLE} (id, client, seq, payload) values ($1, $2, $3, $4)`, values: [a.toString(), n, seq - 1, payload] });
              await c.query({ name: "load-insert", text: `insert into ${LOAD_TABLE} (id, client, seq, payload) values ($1, $2, $3, $4)`, values: [b.toString(), n, seq, payload] });
              await c.query(`insert into load_counters (client, n) values ($1, 2) on conflict (client) do update set n = load_counters.n + 2`, [n]);
              await c.query("select nextval('load_tx_seq')");
              await c.query("commit");
            } catch (e) {
              await c.query("rollback").catch(() => undefined);
              throw e;
            }
            this.acked.add(a);
            this.acked.add(b);
            mine += 2;
          }
          this.ops++;
        } catch (e) {
          this.errors.push({ client: n, op, code: (e as { code?: string }).code, message: (e as Error).message, at });
          if (!this.running) break;
          await sleep(50);
        }
        const ms = performance.now() - t0;
        this.samples.push({ at, ms });
        if (ms > this.longest.ms) this.longest = { at, ms, op };
        if (interval > 0) {
          next += interval;
          const wait = next - Date.now();
          if (wait > 0) await sleep(wait);
          else if (wait < -1000) next = Date.now(); // fell behind (a pause): do not burst to catch up
        }
      }
    } finally {
      await c.end().catch(() => undefined);
    }
  }
}

/** Ids present in the load table of a database (read directly on a server, as admin). */
export async function storedIds(config: ClientConfig): Promise<bigint[]> {
  const c = new Client(config);
  await c.connect();
  try {
    const r = await c.query<{ id: string }>(`select id from ${LOAD_TABLE}`);
    return r.rows.map((x) => BigInt(x.id));
  } finally {
    await c.end();
  }
}

/** Compare acknowledged ids with stored ones: missing (lost writes) and extra (never acknowledged). */
export function compareIds(acknowledged: bigint[], stored: bigint[]): { missing: bigint[]; extra: bigint[] } {
  const s = new Set(stored);
  const a = new Set(acknowledged);
  return { missing: acknowledged.filter((x) => !s.has(x)), extra: stored.filter((x) => !a.has(x)) };
}

const round = (x: number) => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The goals of `npm run bench:cutover`, for either engine. */
export function cutoverGoals(r: { pauseMs: number | undefined; migrationMs: number; dumpRestoreMs: number; errors: number; lostWrites: number }): Record<string, boolean> {
  return {
    pauseAtMost100ms: (r.pauseMs ?? Infinity) <= 100,
    noSlowerThanDumpRestore: r.migrationMs <= r.dumpRestoreMs,
    zeroErrors: r.errors === 0,
    zeroLostWrites: r.lostWrites === 0,
  };
}

/**
 * Writes at a steady rate, each client on its own connection (`open(i)`), `write` returning the id
 * it wrote: every acknowledged id, every error, and each write's start and latency. The cutover
 * benchmarks' load, whatever the engine.
 */
export class SteadyLoad<C, Id> {
  readonly acked: Id[] = [];
  readonly errors: string[] = [];
  readonly samples: { at: number; ms: number }[] = [];
  private stopped = false;
  private readonly running: Promise<void>[] = [];
  private next = 0;

  constructor(
    private readonly client: { open(i: number): Promise<C> | C; write(c: C, n: number): Promise<Id>; close(c: C): Promise<unknown> | void },
    private readonly clients: number,
    private readonly perSecond: number,
  ) {}

  start(): void {
    const interval = (1000 * this.clients) / this.perSecond;
    for (let i = 0; i < this.clients; i++) {
      this.running.push(
        (async () => {
          const c = await this.client.open(i);
          let next = Date.now() + (interval * i) / this.clients;
          while (!this.stopped) {
            const wait = next - Date.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            next += interval;
            const at = Date.now();
            try {
              this.acked.push(await this.client.write(c, this.next++));
            } catch (e) {
              this.errors.push((e as Error).message);
            }
            this.samples.push({ at, ms: Date.now() - at });
          }
          await this.client.close(c);
        })(),
      );
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }

  /** The longest write that was running at some point in [from, to] (ms since epoch). */
  maxLatencyBetween(from: number, to: number): number {
    return this.samples.filter((s) => s.at + s.ms >= from && s.at <= to).reduce((m, s) => Math.max(m, s.ms), 0);
  }

  /** Latency percentiles over every write (ms). */
  latency(): { p50: number; p99: number; max: number } {
    const sorted = this.samples.map((s) => s.ms).sort((a, b) => a - b);
    const pct = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    return { p50: pct(0.5), p99: pct(0.99), max: sorted[sorted.length - 1] ?? 0 };
  }
}

/** The longest operation among `samples` that started in [from, to] (ms since epoch). */
export function longestStartedBetween(samples: readonly { at: number; ms: number }[], from: number, to: number): number {
  let max = 0;
  for (const s of samples) if (s.at >= from && s.at <= to && s.ms > max) max = s.ms;
  return max;
}
