/**
 * `transaction` pool mode through a real proxy process on a real PostgreSQL server: many clients
 * on a few server connections, protocol-level prepared statements mapped across connections,
 * startup parameters on every borrowed connection, the session-state rule (pinning), the queue
 * timeout, and the server budget shared by two tenant databases' pools.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import * as net from "node:net";
import * as path from "node:path";
import { Client } from "pg";
import { LocalPgFleet, type PgServer, type ProxyProcess, type TenantDb } from "../../scripts/lib/local-pg-fleet";
import { setRoutePool, type TenantDbKey } from "../../proxy/catalog/routes";
import * as w from "../../proxy/postgres/writer";
import { BE, FE } from "../../proxy/postgres/codes";
import { FrameScanner, ALL_TYPES } from "../../proxy/postgres/frame-reader";
import { parseErrorFields } from "../../proxy/postgres/startup";
import { ScramClient, parseVerifier } from "../../proxy/postgres/scram";
import { createHmac, pbkdf2Sync } from "node:crypto";

const PGBENCH = "/usr/lib/postgresql/15/bin/pgbench";
/** The drivers' client programs (pgjdbc, asyncpg). */
const CLIENTS = path.join(__dirname, "..", "fixtures", "pooled-clients");

let fleet: LocalPgFleet;
let server: PgServer;
let acme: TenantDb;
let globex: TenantDb;
let initech: TenantDb;
let proxy: ProxyProcess;

async function pool(k: TenantDbKey, size: number, serverBudget?: number): Promise<void> {
  await fleet.withAdmin(fleet.catalog, "tenantfleet_catalog", (c) => setRoutePool(c, k, { poolMode: "transaction", poolSize: size, serverBudget }));
}

/** A client of the shared proxy. A test that fails leaves its clients open: the proxy's FATAL at
 * shutdown must not bury the failure under uncaught errors (queries still reject on their own). */
function client(t: TenantDb, extra: Record<string, unknown> = {}): Client {
  const c = new Client({ host: "127.0.0.1", port: proxy.port, user: t.role, password: t.password, database: t.name, ...extra });
  c.on("error", () => undefined);
  return c;
}

/** Server connections of these roles now (client backends only), in one snapshot of
 * pg_stat_activity: counts summed over separate queries could add a connection that closed
 * before the other query ran to the one opened in its place. */
async function serverConnections(...roles: string[]): Promise<number> {
  return fleet.withAdmin(server, "postgres", async (c) =>
    Number((await c.query("select count(*) as n from pg_stat_activity where usename = any($1) and backend_type = 'client backend'", [roles])).rows[0].n),
  );
}

/** Sample the peak of `read` while `work` runs. */
async function peakDuring<T>(read: () => Promise<number>, work: Promise<T>): Promise<{ result: T; peak: number }> {
  let done = false;
  let peak = 0;
  const sampler = (async () => {
    while (!done) {
      peak = Math.max(peak, await read());
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    return { result: await work, peak };
  } finally {
    done = true;
    await sampler;
  }
}

beforeAll(async () => {
  fleet = await LocalPgFleet.create({ stack: "pool" });
  server = await fleet.server("s1");
  acme = await fleet.tenantDatabase(server, { tenant: "acme", database: "app" });
  globex = await fleet.tenantDatabase(server, { tenant: "globex", database: "app" });
  initech = await fleet.tenantDatabase(server, { tenant: "initech", database: "app" });
  for (const t of [acme, globex, initech]) {
    await fleet.withAdmin(server, t.name, async (c) => {
      await c.query(`set role ${t.role}`);
      await c.query("create table items (id bigint primary key, client text not null)");
    });
  }
  await pool(acme, 5);
  await pool(globex, 1);
  proxy = await fleet.startProxy("proxy-1", { extraArgs: ["--pool-queue-timeout", "1.5"] });
}, 120_000);

afterAll(async () => {
  await fleet?.close();
});

describe("transaction pool mode", () => {
  it("300 node-postgres clients share a pool of 5 server connections: every query succeeds", async () => {
    const clients = Array.from({ length: 300 }, (_, i) => client(acme, { application_name: `c${i}` }));
    await Promise.all(clients.map((c) => c.connect()));
    const work = Promise.all(
      clients.map(async (c, i) => {
        await c.query("insert into items values ($1, $2)", [i, `c${i}`]);
        const r = await c.query("select current_setting('application_name') as app, count(*)::int as n from items where id = $1", [i]);
        return r.rows[0];
      }),
    );
    const { result, peak } = await peakDuring(() => serverConnections(acme.role), work);
    expect(result.every((r, i) => r.app === `c${i}` && r.n === 1)).toBe(true); // each transaction ran with its own client's startup parameter
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(5);
    expect(await activeSessions()).toBeGreaterThanOrEqual(300);
    await Promise.all(clients.map((c) => c.end()));
    expect(await fleet.withAdmin(server, acme.name, async (c) => Number((await c.query("select count(*) as n from items")).rows[0].n))).toBe(300);
    // Sessions that ended between transactions (holding no server connection) are gone from the proxy too.
    for (const until = Date.now() + 5000; (await activeSessions()) > 0 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
    expect(await activeSessions()).toBe(0);
  }, 60_000);

  it("named prepared statements work across server connections; the same name can mean different statements for different clients", async () => {
    const a = client(acme);
    const b = client(acme);
    await Promise.all([a.connect(), b.connect()]);
    const results: string[] = [];
    // 40 rounds on 2 clients over a pool of 5: statements run on connections that never saw their Parse.
    for (let i = 0; i < 40; i++) {
      const [ra, rb] = await Promise.all([
        a.query({ name: "q", text: "select 'a:' || $1::text as v", values: [i] }),
        b.query({ name: "q", text: "select 'b:' || ($1::int * 2)::text as v", values: [i] }),
      ]);
      results.push(ra.rows[0].v, rb.rows[0].v);
    }
    expect(results.slice(0, 4)).toEqual(["a:0", "b:0", "a:1", "b:2"]);
    expect(results.at(-1)).toBe("b:78");
    // A transaction keeps its connection: a statement prepared inside it and its rows stay together.
    await a.query("begin");
    await a.query({ name: "ins", text: "insert into items values ($1, 'txn')", values: [10_001] });
    const seen = await a.query({ name: "count", text: "select count(*)::int as n from items where id = $1", values: [10_001] });
    await a.query("rollback");
    expect(seen.rows[0].n).toBe(1);
    await Promise.all([a.end(), b.end()]);
  });

  it("Close of a named statement, then a new Parse of the same name with another text (raw protocol)", async () => {
    const c = await RawClient.connect(proxy.port, acme);
    try {
      const run = (sql: string, name: string) => [
        w.message(FE.Parse, Buffer.concat([w.cstring(name), w.cstring(sql), Buffer.from([0, 0])])),
        w.message(FE.Bind, Buffer.concat([w.cstring(""), w.cstring(name), Buffer.from([0, 0, 0, 0, 0, 0])])),
        w.message(FE.Execute, Buffer.concat([w.cstring(""), Buffer.from([0, 0, 0, 0])])),
        w.sync(),
      ];
      const first = await c.roundTrip(run("select 1", "s"));
      expect(first.types).toEqual([BE.ParseComplete, BE.BindComplete, BE.DataRow, BE.CommandComplete, BE.ReadyForQuery]);
      expect(first.rows).toEqual(["1"]);
      const closed = await c.roundTrip([w.message(FE.Close, Buffer.concat([Buffer.from("S"), w.cstring("s")])), w.sync()]);
      expect(closed.types).toEqual([BE.CloseComplete, BE.ReadyForQuery]);
      const again = await c.roundTrip(run("select 2", "s"));
      expect(again.types).toEqual([BE.ParseComplete, BE.BindComplete, BE.DataRow, BE.CommandComplete, BE.ReadyForQuery]);
      expect(again.rows).toEqual(["2"]);
      // The same statement parsed again under a new name on a connection that holds it: one ParseComplete, as asked.
      const twice = await c.roundTrip([...run("select 2", "t").slice(0, 1), w.sync()]);
      expect(twice.types).toEqual([BE.ParseComplete, BE.ReadyForQuery]);
      // An unknown statement name is the server's error, and the session goes on.
      const unknown = await c.roundTrip(run("", "nope").slice(1));
      expect(unknown.errors[0]?.C).toBe("26000");
      expect(unknown.types.at(-1)).toBe(BE.ReadyForQuery);
    } finally {
      c.close();
    }
  });

  // One thread per client (-j 8): pgbench prepares each statement with a blocking PQprepare on its
  // first use, which stops every client of that thread; with 4 clients a thread, those holding
  // a transaction wait on the one waiting for a connection (so would they behind PgBouncer).
  it("pgbench -M prepared, simple and extended run unchanged: 8 clients on a pool of 5", async () => {
    const init = await pgbenchRun(["-i", "-s", "1", "-q"], server.port, acme);
    expect(init.code, init.out).toBe(0);
    for (const mode of ["prepared", "simple", "extended"]) {
      const r = await pgbenchRun(["-M", mode, "-c", "8", "-j", "8", "-T", "3", "-n"], proxy.port, acme);
      expect(r.code, r.out).toBe(0);
      expect(r.out).not.toMatch(/error|aborted/i);
      expect(Number(/number of transactions actually processed: (\d+)/.exec(r.out)?.[1])).toBeGreaterThan(50);
    }
  }, 60_000);

  // Drivers that prepare named statements on their own (PgBouncer before 1.21 broke them in
  // transaction mode): pgjdbc past its prepareThreshold, asyncpg for every query it caches.
  // pgjdbc with its defaults sends `SET extra_float_digits = 3` and `SET application_name` as
  // queries after connecting (unless told the server is at least 9.0, when it sends them as startup
  // parameters): the session-state rule pins each such session to its connection. It works, one
  // server connection per client; with assumeMinServerVersion=9.0 it is pooled (proxy/README.md).
  const jdbc = ["java", "-cp", "/usr/share/java/postgresql.jar", path.join(CLIENTS, "PooledJdbc.java")];
  for (const driver of [
    { name: "pgjdbc (assumeMinServerVersion=9.0)", client: "jdbc-pooled", firstId: 1_000_000, pooled: true, command: jdbc, extra: ["assumeMinServerVersion=9.0"] },
    { name: "pgjdbc (defaults)", client: "jdbc", firstId: 3_000_000, pooled: false, command: jdbc, extra: [] },
    { name: "asyncpg", client: "asyncpg", firstId: 2_000_000, pooled: true, command: ["/usr/bin/python3", path.join(CLIENTS, "pooled_asyncpg.py")], extra: [] },
  ]) {
    it(`${driver.name} runs unchanged with its named prepared statements: 8 clients on a pool of 5 (${driver.pooled ? "pooled" : "each pinned"})`, async () => {
      const pinsBefore = await pinnedCount();
      const { result, peak } = await peakDuring(() => serverConnections(acme.role), runClient(driver.command, [acme.role, acme.password, acme.name, "8", String(driver.firstId), driver.client, ...driver.extra]));
      const report = JSON.parse(result.trim().split("\n").at(-1)!) as { inserted: number; errors: string[]; namedStatements?: boolean };
      expect(report.errors).toEqual([]);
      expect(report.inserted).toBe(8 * 30 * 2);
      if (driver.client.startsWith("jdbc")) expect(report.namedStatements).toBe(true);
      const rows = await fleet.withAdmin(server, acme.name, async (c) => Number((await c.query("select count(*) as n from items where client = $1", [driver.client])).rows[0].n));
      expect(rows).toBe(8 * 30 * 2);
      const pins = (await pinnedCount()) - pinsBefore;
      if (driver.pooled) {
        expect(pins).toBe(0);
        expect(peak).toBeLessThanOrEqual(5);
      } else expect(pins).toBe(8);
    }, 120_000);
  }

  describe("session state that cannot live in a borrowed connection pins the session to it", () => {
    it("SET: the session keeps its setting; other sessions never see it", async () => {
      const a = client(acme);
      const others = Array.from({ length: 6 }, () => client(acme));
      await Promise.all([a, ...others].map((c) => c.connect()));
      await a.query("set work_mem = '7MB'");
      for (let i = 0; i < 5; i++) expect((await a.query("show work_mem")).rows[0].work_mem).toBe("7MB");
      const theirs = await Promise.all(others.map((c) => c.query("show work_mem")));
      expect(theirs.map((r) => r.rows[0].work_mem)).not.toContain("7MB");
      // SET LOCAL ends with its transaction: no pin, nothing leaks.
      const b = others[0]!;
      await b.query("begin");
      await b.query("set local work_mem = '9MB'");
      await b.query("commit");
      expect((await Promise.all(others.map((c) => c.query("show work_mem")))).map((r) => r.rows[0].work_mem)).not.toContain("9MB");
      await Promise.all([a, ...others].map((c) => c.end()));
    });

    it("LISTEN: notifications reach the listening session", async () => {
      const l = client(acme);
      const n = client(acme);
      await Promise.all([l.connect(), n.connect()]);
      const got = new Promise<string>((resolve) => l.on("notification", (m) => resolve(m.payload ?? "")));
      await l.query("listen jobs");
      await n.query("select pg_notify('jobs', 'hello')");
      expect(await got).toBe("hello");
      await Promise.all([l.end(), n.end()]);
    });

    it("a session advisory lock stays held by its session until it unlocks", async () => {
      const a = client(acme);
      const b = client(acme);
      await Promise.all([a.connect(), b.connect()]);
      expect((await a.query("select pg_advisory_lock(42)")).rowCount).toBe(1);
      expect((await b.query("select pg_try_advisory_lock(42) as ok")).rows[0].ok).toBe(false);
      expect((await a.query("select pg_advisory_unlock(42) as ok")).rows[0].ok).toBe(true);
      expect((await b.query("select pg_try_advisory_lock(42) as ok")).rows[0].ok).toBe(true);
      await Promise.all([a.end(), b.end()]);
    });

    it("a WITH HOLD cursor and a temporary table outlive their transaction", async () => {
      const a = client(acme);
      await a.connect();
      await a.query("declare cur cursor with hold for select g from generate_series(1, 5) g");
      expect((await a.query("fetch 2 from cur")).rows.map((r) => r.g)).toEqual([1, 2]);
      expect((await a.query("fetch 2 from cur")).rows.map((r) => r.g)).toEqual([3, 4]);
      await a.end();
      const t = client(acme);
      await t.connect();
      await t.query("create temporary table scratch (x int)");
      await t.query("insert into scratch values (1), (2)");
      expect((await t.query("select count(*)::int as n from scratch")).rows[0].n).toBe(2);
      await t.end();
    });

    it("the pins are counted, and a pinned connection closes with its session (its state never reaches another client)", async () => {
      expect(await pinnedCount()).toBeGreaterThanOrEqual(5);
      const c = client(acme);
      await c.connect();
      const r = await c.query("select count(*)::int as n from pg_class where relnamespace = pg_my_temp_schema()");
      expect(r.rows[0].n).toBe(0);
      await c.end();
    });
  });

  it("a client that waits longer than the queue timeout gets an ErrorResponse (53300), not a reset", async () => {
    const holder = client(globex); // pool size 1
    await holder.connect();
    await holder.query("begin");
    await holder.query("select 1");
    const waiter = client(globex); // the FATAL ends its connection
    await waiter.connect();
    const started = Date.now();
    const err = (await waiter.query("select 1").catch((e) => e)) as Error & { code?: string };
    expect(err.code).toBe("53300");
    expect(err.message).toMatch(/no server connection for app__globex within 1500 ms: its pool of 1 is busy/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    await holder.query("commit");
    await holder.end();
    await waiter.end().catch(() => undefined);
  });

  it("a client that disconnects while the pool is busy leaves at once (no connection borrowed to say goodbye)", async () => {
    const holder = client(globex); // pool size 1
    await holder.connect();
    await holder.query("begin");
    const leaver = client(globex);
    await leaver.connect();
    const started = Date.now();
    await leaver.end();
    expect(Date.now() - started).toBeLessThan(500); // the queue timeout is 1.5 s
    await holder.query("commit");
    await holder.end();
  });

  it("more pools than the budget has connections: every tenant database is served in turn, none times out", async () => {
    const many: TenantDb[] = [];
    for (let i = 0; i < 6; i++) {
      const t = await fleet.tenantDatabase(server, { tenant: `many${i}`, database: "app" });
      await pool(t, 1, 2);
      many.push(t);
    }
    // A proxy of its own with a long queue timeout: every hand-over opens a connection (slow on a
    // busy machine). A pool left out of the hand-over would wait the whole timeout and its client
    // would get 53300: the queries below would fail, and the timeout counter would say so.
    const patient = await fleet.startProxy("proxy-patient", { extraArgs: ["--pool-queue-timeout", "45"] });
    const clients = many.map((t) => new Client({ host: "127.0.0.1", port: patient.port, user: t.role, password: t.password, database: t.name }));
    for (const c of clients) c.on("error", () => undefined); // the proxy's stop below must not become an uncaught error
    try {
      await Promise.all(clients.map((c) => c.connect()));
      const work = Promise.all(clients.map(async (c) => {
        for (let k = 0; k < 3; k++) await c.query("select pg_sleep(0.02)");
        return "served";
      }));
      const { result, peak } = await peakDuring(() => serverConnections(...many.map((t) => t.role)), work);
      expect(result).toEqual(many.map(() => "served"));
      expect(peak).toBeLessThanOrEqual(2);
      const metrics = await (await fetch(`http://127.0.0.1:${patient.adminPort}/metrics`)).text();
      const timeouts = [...metrics.matchAll(/^tenantfleet_proxy_pool_timeouts_total\{[^}]*tenant="many\d"[^}]*\} (\d+)$/gm)].map((m) => Number(m[1]));
      expect(timeouts).toEqual(many.map(() => 0));
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await patient.stop();
    }
  }, 120_000);

  it("the server budget is shared: two pools of 3 under a budget of 3 never exceed it, and both keep working", async () => {
    await pool(initech, 3, 3);
    await pool(acme, 3, 3);
    await new Promise((r) => setTimeout(r, 300)); // the proxy follows the catalog
    const run = (t: TenantDb, n: number) =>
      Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const c = client(t);
          await c.connect();
          for (let k = 0; k < 5; k++) await c.query("select pg_sleep(0.01), $1::int as i", [i]);
          await c.end();
        }),
      );
    const both = () => serverConnections(acme.role, initech.role);
    const { peak } = await peakDuring(both, Promise.all([run(acme, 20), run(initech, 20)]));
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(3);
    await pool(acme, 5);
  }, 60_000);
});

/** Sessions of acme open now (the proxy's metrics). */
async function activeSessions(): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  return Number(/tenantfleet_proxy_active_connections\{[^}]*tenant="acme"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? NaN);
}

/** Sessions of acme pinned so far (the proxy's metrics). */
async function pinnedCount(): Promise<number> {
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  return Number(/tenantfleet_proxy_pinned_sessions_total\{[^}]*tenant="acme"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
}

/** Run a driver's client program against the proxy; its stdout (it reports in JSON). */
function runClient(command: string[], args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command[0]!, [...command.slice(1), "127.0.0.1", String(proxy.port), ...args], { maxBuffer: 1 << 24, timeout: 100_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${command.join(" ")} failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

function pgbenchRun(args: string[], port: number, t: TenantDb): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(PGBENCH, [...args, "-h", "127.0.0.1", "-p", String(port), "-U", t.role, t.name], { env: { ...process.env, PGPASSWORD: t.password }, maxBuffer: 1 << 24 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}\n${stderr}` }),
    );
  });
}

/** A minimal protocol client: the messages it sends are exactly the test's. */
class RawClient {
  private readonly scanner = new FrameScanner(ALL_TYPES);
  private frames: { type: number; body: Buffer }[] = [];
  private wake: (() => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on("data", (chunk) => {
      this.scanner.scan(chunk, (type, body) => this.frames.push({ type, body: Buffer.from(body) }));
      this.wake?.();
    });
  }

  static async connect(port: number, t: TenantDb): Promise<RawClient> {
    const socket = net.connect({ host: "127.0.0.1", port });
    await new Promise((r) => socket.once("connect", r));
    const c = new RawClient(socket);
    socket.write(w.startupMessage({ user: t.role, database: t.name }));
    const verifier = parseVerifier((await fleet.route(t)).scramVerifier);
    const salted = pbkdf2Sync(t.password, verifier.salt, verifier.iterations, 32, "sha256");
    const scram = new ScramClient(createHmac("sha256", salted).update("Client Key").digest(), verifier);
    await c.until((f) => f.type === BE.Authentication && f.body.readInt32BE(0) === 10);
    socket.write(w.saslInitialResponse("SCRAM-SHA-256", scram.first()));
    const cont = await c.until((f) => f.type === BE.Authentication && f.body.readInt32BE(0) === 11);
    socket.write(w.saslResponse(scram.final(cont.body.toString("utf8", 4))));
    await c.until((f) => f.type === BE.ReadyForQuery);
    c.frames = [];
    return c;
  }

  private async until(pred: (f: { type: number; body: Buffer }) => boolean): Promise<{ type: number; body: Buffer }> {
    for (;;) {
      const f = this.frames.find(pred);
      if (f) return f;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** Send messages ending in one Sync; the answers up to its ReadyForQuery. */
  async roundTrip(messages: Buffer[]): Promise<{ types: number[]; rows: string[]; errors: Record<string, string>[] }> {
    this.frames = [];
    this.socket.write(Buffer.concat(messages));
    await this.until((f) => f.type === BE.ReadyForQuery);
    const frames = this.frames;
    this.frames = [];
    return {
      types: frames.map((f) => f.type),
      rows: frames.filter((f) => f.type === BE.DataRow).map((f) => f.body.toString("utf8", 6)),
      errors: frames.filter((f) => f.type === BE.ErrorResponse).map((f) => parseErrorFields(f.body)),
    };
  }

  close(): void {
    this.socket.end(w.terminate());
  }
}
