/**
 * For tests and benchmarks (not product code): ioredis clients that use a Redis tenant database
 * through the proxies until stopped, each kind on its own connection, and what they prove:
 *
 * - pipelined SETs of client-side ids (16 per round trip) and INCRs whose replies must count up
 *   one by one (an acknowledged INCR that is lost would show as a repeated value);
 * - MULTI/EXEC transactions, one with a WATCH (a null EXEC is a legal abort, retried);
 * - a subscriber that must receive every message a publisher's PUBLISH acknowledged with a
 *   receiver (and none may be acknowledged with no receiver);
 * - BLPOP consumers of the jobs a producer pushed, each job popped exactly once;
 * - EVALSHA of a script loaded once (NOSCRIPT after a move would be an error);
 * - a stream consumer group reading with XREADGROUP BLOCK and acknowledging.
 *
 * Every client error is recorded; `check` reads the instance at the end and lists what is missing.
 */
import { longestStartedBetween } from "./load";
import IORedis, { type RedisOptions } from "ioredis";

export interface RedisEndpoint {
  port: number;
  user: string;
  password: string;
}

export class RedisLoad {
  readonly errors: string[] = [];
  readonly setAcked: string[] = [];
  txAcked = 0;
  watchAborts = 0;
  incrAcked = 0;
  readonly published: number[] = [];
  readonly received = new Set<number>();
  readonly zeroReceivers: number[] = [];
  readonly pushed: string[] = [];
  readonly popped: string[] = [];
  evalAcked = 0;
  readonly xadded: string[] = [];
  readonly xread = new Set<string>();
  private readonly samples: { at: number; ms: number }[] = [];
  private stopped = false;
  private readonly running: Promise<void>[] = [];
  /** Loops still in their step (by name), for a stop that does not end. */
  private readonly busy = new Set<string>();
  private readonly clients: IORedis[] = [];
  private next = 0;

  constructor(
    private readonly prefix: string,
    private readonly endpoints: RedisEndpoint[],
  ) {}

  private client(i: number, extra: RedisOptions = {}): IORedis {
    const e = this.endpoints[i % this.endpoints.length]!;
    const c = new IORedis({ host: "127.0.0.1", port: e.port, username: e.user, password: e.password, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, lazyConnect: true, ...extra });
    c.on("error", () => undefined);
    this.clients.push(c);
    return c;
  }

  private loop(name: string, c: IORedis, step: () => Promise<void>, pauseMs = 2): void {
    this.running.push(
      (async () => {
        try {
          if (c.status === "wait") await c.connect();
        } catch (e) {
          this.errors.push(`${name}: connect: ${(e as Error).message}`);
          return;
        }
        while (!this.stopped) {
          const at = Date.now();
          this.busy.add(name);
          try {
            await step();
          } catch (e) {
            if (!this.closed) this.errors.push(`${name}: ${(e as Error).message}`); // not the disconnect of a stop that waited too long
            break;
          } finally {
            this.busy.delete(name);
            this.samples.push({ at, ms: Date.now() - at });
          }
          if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
        }
      })(),
    );
  }

  async start(): Promise<void> {
    const p = this.prefix;
    // Pipelined SETs and INCRs.
    const pipe = this.client(0);
    let lastIncr = 0;
    this.loop("pipeline", pipe, async () => {
      const ids = Array.from({ length: 16 }, () => `${p}:set:${this.next++}`);
      const batch = pipe.pipeline();
      for (const id of ids) batch.set(id, "v");
      batch.incr(`${p}:incr`);
      const res = (await batch.exec())!;
      for (const [err] of res) if (err) throw err;
      this.setAcked.push(...ids);
      const n = Number(res[res.length - 1]![1]);
      if (n !== lastIncr + 1) throw new Error(`INCR answered ${n} after ${lastIncr}: an acknowledged increment is missing`);
      lastIncr = n;
      this.incrAcked = n;
    });
    // Transactions, one of them watched.
    const tx = this.client(1);
    this.loop("multi", tx, async () => {
      const id = `${p}:tx:${this.next++}`;
      const res = await tx.multi().set(id, "t").incr(`${p}:txcount`).exec();
      if (!res || res.some(([e]) => e)) throw new Error(`EXEC failed: ${JSON.stringify(res)}`);
      this.txAcked++;
    });
    const watched = this.client(0);
    this.loop("watch", watched, async () => {
      await watched.watch(`${p}:w`);
      const v = Number(await watched.get(`${p}:w`));
      const res = await watched.multi().set(`${p}:w`, String(v + 1)).exec();
      if (res === null) this.watchAborts++;
      else if (res.some(([e]) => e)) throw new Error(`EXEC failed: ${JSON.stringify(res)}`);
    });
    // Pub/sub: subscriber on one proxy, publisher on the other.
    const sub = this.client(0);
    await sub.connect();
    sub.on("message", (_ch: string, m: string) => this.received.add(Number(m)));
    await sub.subscribe(`${p}:ch`);
    const pub = this.client(1);
    let seq = 0;
    this.loop("publish", pub, async () => {
      const n = seq++;
      const receivers = await pub.publish(`${p}:ch`, String(n));
      if (receivers === 0) this.zeroReceivers.push(n);
      else this.published.push(n);
    });
    // Jobs: a producer and two blocked consumers.
    const producer = this.client(1);
    this.loop("rpush", producer, async () => {
      const id = `${this.next++}`;
      await producer.rpush(`${p}:jobs`, id);
      this.pushed.push(id);
    }, 5);
    for (const i of [0, 1]) {
      const consumer = this.client(i);
      this.loop(`blpop-${i}`, consumer, async () => {
        const r = await consumer.blpop(`${p}:jobs`, 1);
        if (r) this.popped.push(r[1]);
      }, 0);
    }
    // A script loaded once, run by its SHA.
    const ev = this.client(1);
    await ev.connect();
    const sha = (await ev.script("LOAD", "return redis.call('incr', KEYS[1])")) as string;
    this.loop("evalsha", ev, async () => {
      await ev.evalsha(sha, 1, `${p}:eval`);
      this.evalAcked++;
    });
    // A stream and its consumer group.
    const admin = this.client(0);
    await admin.connect();
    await admin.xgroup("CREATE", `${p}:stream`, "g", "$", "MKSTREAM");
    const xp = this.client(0);
    this.loop("xadd", xp, async () => {
      this.xadded.push((await xp.xadd(`${p}:stream`, "*", "n", String(this.next++)))!);
    }, 5);
    const xc = this.client(1);
    this.loop("xreadgroup", xc, async () => {
      const r = (await xc.xreadgroup("GROUP", "g", "c1", "COUNT", 50, "BLOCK", 1000, "STREAMS", `${p}:stream`, ">")) as [string, [string, string[]][]][] | null;
      for (const [, entries] of r ?? []) {
        for (const [id] of entries) this.xread.add(id);
        if (entries.length) await xc.xack(`${p}:stream`, "g", ...entries.map(([id]) => id));
      }
    }, 0);
  }

  /** The longest operation that started in [from, to] (ms since epoch). */
  maxLatencyBetween(from: number, to: number): number {
    return longestStartedBetween(this.samples, from, to);
  }

  /**
   * Stops every loop after its current step. A step still unanswered after `graceMs` is a command
   * the proxy never replied to: recorded in `errors` (by loop), and the clients are disconnected
   * so that the stop ends.
   */
  async stop(graceMs = 20_000): Promise<void> {
    this.stopped = true;
    const all = Promise.all(this.running);
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([all.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
    clearTimeout(timer);
    if (late) {
      const why = `stop: no reply within ${graceMs} ms to the commands in flight of ${[...this.busy].join(", ")}`;
      this.errors.push(why);
      console.warn(`RedisLoad ${this.prefix}: ${why}; disconnecting`);
      this.close();
      await all;
    }
    await new Promise((r) => setTimeout(r, 300)); // the last messages in flight to the subscriber
  }

  /** What an acknowledged write left on the instance that serves the tenant database now; empty when nothing is missing. */
  async check(c: IORedis): Promise<string[]> {
    const p = this.prefix;
    const missing: string[] = [];
    const sets = await Promise.all(chunk(this.setAcked, 1000).map((ids) => c.exists(...ids)));
    const present = sets.reduce((a, b) => a + b, 0);
    if (present !== this.setAcked.length) missing.push(`${this.setAcked.length - present} of ${this.setAcked.length} acknowledged SETs`);
    const incr = Number(await c.get(`${p}:incr`));
    if (incr !== this.incrAcked) missing.push(`INCR at ${incr}, ${this.incrAcked} acknowledged`);
    const tx = Number(await c.get(`${p}:txcount`));
    if (tx !== this.txAcked) missing.push(`${this.txAcked} transactions acknowledged, counter at ${tx}`);
    const ev = Number(await c.get(`${p}:eval`));
    if (ev !== this.evalAcked) missing.push(`${this.evalAcked} EVALSHAs acknowledged, counter at ${ev}`);
    const notReceived = this.published.filter((n) => !this.received.has(n));
    if (notReceived.length) missing.push(`${notReceived.length} published messages not received (first ${notReceived.slice(0, 5).join(",")})`);
    if (this.zeroReceivers.length) missing.push(`${this.zeroReceivers.length} messages published with no subscriber (first ${this.zeroReceivers.slice(0, 5).join(",")})`);
    const left = await c.lrange(`${p}:jobs`, 0, -1);
    const seen = new Map<string, number>();
    for (const j of [...this.popped, ...left]) seen.set(j, (seen.get(j) ?? 0) + 1);
    const lost = this.pushed.filter((j) => !seen.has(j));
    const twice = [...seen].filter(([, n]) => n > 1);
    if (lost.length) missing.push(`${lost.length} pushed jobs neither popped nor in the list`);
    if (twice.length) missing.push(`${twice.length} jobs popped twice`);
    const pending = (await c.xrange(`${p}:stream`, "-", "+")).map(([id]) => id);
    const inStream = new Set(pending);
    const xlost = this.xadded.filter((id) => !inStream.has(id));
    if (xlost.length) missing.push(`${xlost.length} acknowledged XADDs not in the stream`);
    return missing;
  }

  counts(): Record<string, number> {
    return { sets: this.setAcked.length, incr: this.incrAcked, tx: this.txAcked, watchAborts: this.watchAborts, published: this.published.length, received: this.received.size, pushed: this.pushed.length, popped: this.popped.length, evalsha: this.evalAcked, xadd: this.xadded.length, xread: this.xread.size };
  }

  private closed = false;

  close(): void {
    this.closed = true;
    for (const c of this.clients) c.disconnect();
  }
}

function chunk<T>(a: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < a.length; i += n) out.push(a.slice(i, i + n));
  return out;
}
