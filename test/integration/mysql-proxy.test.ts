/**
 * The MySQL-protocol listener of real proxy processes in front of real MariaDB servers (as
 * LocalServer creates them), through real clients: mysql2 (text and binary protocol) and the
 * `mariadb` command-line client. Logins are checked against the catalog's native verifiers and
 * the proxy logs into the server with what the client proved; refusals carry MySQL's codes; one
 * tenant's login never reaches another's database. Then drain and switch: the tenant database
 * is moved back and forth between two MariaDB servers while clients write through both proxies,
 * the rows that landed on the old server copied to the new one during each pause (as a
 * migration's final catch-up would), so a write that slipped past the drain would be missing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import * as mysql from "mysql2/promise";
import type { LocalPgFleet, ProxyProcess } from "../../scripts/lib/local-pg-fleet";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import { commitRoute } from "../../proxy/catalog/routes";
import { Coordinator, DrainTimeoutError } from "../../proxy/catalog/coordinator";
import { Client } from "pg";
import { MysqlServers, Writers, mysqlFleet, type MyTenant } from "../../scripts/lib/local-mysql-servers";

let fleet: LocalPgFleet;
let my: MysqlServers;
let s1: LocalServerOutputs;
let s2: LocalServerOutputs;
let p1: ProxyProcess;
let p2: ProxyProcess;
let coord: Coordinator;
let acme: MyTenant;
let globex: MyTenant;

const asAdmin = <T>(s: LocalServerOutputs, fn: (c: mysql.Connection) => Promise<T>) => my.admin(s, fn);

async function withCatalog<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client(fleet.catalogConfig);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const open = new Set<mysql.Connection>();
async function connect(p: ProxyProcess, t: MyTenant, extra: mysql.ConnectionOptions = {}): Promise<mysql.Connection> {
  const c = await mysql.createConnection({ host: "127.0.0.1", port: p.mysqlPort, user: t.user, password: t.password, database: t.name, ...extra });
  open.add(c);
  return c;
}

/** Until every proxy has loaded the route of `t` (catalog notifications can come late on a loaded machine). */
async function served(t: MyTenant): Promise<void> {
  for (const p of [p1, p2]) {
    for (const end = Date.now() + 30_000; ; ) {
      let last: unknown;
      const ok = await connect(p, t).then(
        (c) => c.end().then(() => true),
        (e) => ((last = e), false),
      );
      if (ok) break;
      if (Date.now() > end) throw new Error(`${p.id} does not serve ${t.name}: ${(last as Error).message}; proxy log: ${JSON.stringify(p.logs.slice(-5))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Transaction mode: a small pool per proxy, so sessions really share server connections. */
const POOL_SIZE = 3;
const QUEUE_TIMEOUT_S = 3;

for (const mode of ["session", "transaction"] as const) describe(`${mode} pool mode`, () => {
  beforeAll(async () => {
    const pooled = mode === "transaction" ? { transactionPool: POOL_SIZE, proxyArgs: ["--pool-queue-timeout", String(QUEUE_TIMEOUT_S)] } : {};
    ({ fleet, my, s1, s2, p1, p2, acme, globex } = await mysqlFleet(`mysql-proxy-${mode}`, ["my-1", "my-2"], pooled));
    await my.ensure(s2, acme);
    await served(acme);
    await served(globex);
    coord = await Coordinator.connect(fleet.catalogConfig);
  }, 240_000);

  afterEach(async () => {
    const left = [...open];
    open.clear();
    await Promise.all(left.map((c) => Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))])));
    await coord?.resume(acme).catch(() => undefined);
  });

  afterAll(async () => {
    await coord?.close();
    await my?.close();
    await fleet?.close();
  }, 120_000);

  const errno = (e: unknown) => (e as { errno?: number }).errno;

  describe("MySQL listener", () => {
    it("serves the tenant's database with mysql2: text and binary protocol, multi-statements, an 8 MB value", async () => {
      const c = await connect(p1, acme, { multipleStatements: true });
      const [rows] = await c.query<mysql.RowDataPacket[]>("select database() as db, current_user() as who, @@port as port");
      expect(rows[0]).toMatchObject({ db: acme.name, who: `${acme.user}@%`, port: s1.port });
      await c.execute("insert into items values (?, ?, ?)", [1, "execute", Buffer.from("x")]);
      const [multi] = await c.query<mysql.RowDataPacket[][]>("select 1 as a; select 2 as b; insert into items values (2, 'multi', 'y'); select count(*) as n from items");
      expect(multi[0]![0]).toMatchObject({ a: 1 });
      expect(multi[1]![0]).toMatchObject({ b: 2 });
      expect(multi[3]![0]).toMatchObject({ n: 2 });
      const big = Buffer.alloc(8 << 20, 7);
      await c.execute("insert into items values (?, ?, ?)", [3, "big", big]);
      const [back] = await c.execute<mysql.RowDataPacket[]>("select payload from items where id = ?", [3]);
      expect(Buffer.compare(back[0]!.payload as Buffer, big)).toBe(0);
      await c.query("delete from items");
    });

    it("refuses with MySQL's codes: 1045 wrong password or unknown user, 1044 another tenant's database, 1049 an unknown one", async () => {
      await expect(connect(p1, { ...acme, password: "wrong" })).rejects.toMatchObject({ errno: 1045 });
      await expect(connect(p1, { ...acme, user: "nobody" })).rejects.toMatchObject({ errno: 1045 });
      await expect(connect(p1, { ...acme, name: globex.name })).rejects.toMatchObject({ errno: 1044 });
      await expect(connect(p1, { ...acme, name: "shop__nobody" })).rejects.toMatchObject({ errno: 1049 });
    });

    it("one tenant's login never reaches another's database: USE and qualified names are refused by the server", async () => {
      const c = await connect(p2, acme);
      const e1 = await c.query(`use \`${globex.name}\``).catch((e) => e);
      expect(errno(e1)).toBe(1044);
      const e2 = await c.query(`select * from \`${globex.name}\`.items`).catch((e) => e);
      expect(errno(e2)).toBe(1142);
      const [rows] = await c.query<mysql.RowDataPacket[]>("select database() as db");
      expect(rows[0]!.db).toBe(acme.name);
    });

    it("serves the mariadb command-line client (a script of statements)", async () => {
      const out = await new Promise<string>((resolve, reject) =>
        execFile(
          "mariadb",
          ["-h", "127.0.0.1", "-P", String(p1.mysqlPort), "-u", acme.user, acme.name, "--batch", "--skip-column-names", "-e", "insert into items values (10, 'cli', 'z'); select client from items where id = 10; delete from items where id = 10;"],
          { env: { ...process.env, MYSQL_PWD: acme.password } },
          (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)),
        ),
      );
      expect(out.trim()).toBe("cli");
    });

    it("KILL QUERY and KILL name the connection id the client was given, from either proxy; only the login's own sessions", async () => {
      const victim = await connect(p1, acme);
      const interrupted = (by: mysql.Connection) =>
        new Promise<unknown>((resolve) => {
          const running = victim.query("select sleep(30)").then((r) => r, (e) => e);
          // Once the statement runs on the server, interrupt it by the id mysql2 got in the handshake.
          setTimeout(() => void by.query(`KILL QUERY ${victim.threadId}`).then(() => resolve(running), (e) => resolve(e)), 500);
        });
      for (const p of [p1, p2]) {
        const killer = await connect(p, acme);
        const started = Date.now();
        const r = (await interrupted(killer)) as [mysql.RowDataPacket[]] | Error;
        // MariaDB ends an interrupted SLEEP() early with 1 (or error 1317): either way, not 30 s later.
        expect(Date.now() - started, `from ${p === p1 ? "proxy-1" : "proxy-2"}`).toBeLessThan(10_000);
        if (!(r instanceof Error)) expect(Number(Object.values(r[0][0]!)[0])).toBe(1);
        else expect((r as { errno?: number }).errno).toBe(1317);
        // The interrupted connection goes on.
        const [[row]] = await victim.query<mysql.RowDataPacket[]>("select 41 + 1 as n");
        expect(Number(row!.n)).toBe(42);
      }
      // Another tenant's login may not; an unknown id is unknown.
      const other = await connect(p2, globex);
      await expect(other.query(`KILL QUERY ${victim.threadId}`)).rejects.toMatchObject({ errno: 1095 });
      await expect(other.query("KILL QUERY 99")).rejects.toMatchObject({ errno: 1094 });
      // KILL CONNECTION from the other proxy ends the victim's session.
      const killer = await connect(p2, acme);
      await killer.query(`KILL ${victim.threadId}`);
      await expect(victim.query("select 1")).rejects.toBeTruthy();
      // The killer's own session is fine.
      const [[ok]] = await killer.query<mysql.RowDataPacket[]>("select 1 as one");
      expect(Number(ok!.one)).toBe(1);
    });
  });

  describe("MySQL drain and switch", () => {
    const current = async () => {
      const r = await withCatalog(async (c) => (await c.query("select host, port, epoch from tenantfleet.tenant_databases where tenant = $1 and database = $2", [acme.tenant, acme.database])).rows[0]);
      return { server: Number(r.port) === s1.port ? s1 : s2, epoch: Number(r.epoch) };
    };

    /** Make `to` hold exactly the rows of `from` (the tenant is paused: nothing moves meanwhile). */
    async function catchUp(from: LocalServerOutputs, to: LocalServerOutputs): Promise<void> {
      const rows = await asAdmin(from, async (c) => (await c.query<mysql.RowDataPacket[]>(`select id, client, payload from \`${acme.name}\`.items`))[0]);
      await asAdmin(to, async (c) => {
        await c.beginTransaction();
        await c.query(`delete from \`${acme.name}\`.items`);
        if (rows.length) await c.query(`insert into \`${acme.name}\`.items (id, client, payload) values ?`, [rows.map((r) => [r.id, r.client, r.payload])]);
        await c.commit();
      });
    }

    async function move(): Promise<{ pauseMs: number }> {
      const { server: from, epoch } = await current();
      const to = from === s1 ? s2 : s1;
      const started = Date.now();
      await coord.pause(acme, { timeoutMs: 30_000, target: { server: to.serverName, host: to.host, port: to.port, backendDatabase: acme.name } });
      await catchUp(from, to);
      await coord.switch(acme, { server: to.serverName, host: to.host, port: to.port, backendDatabase: acme.name }, epoch + 1);
      await coord.resume(acme);
      return { pauseMs: Date.now() - started };
    }

    it("moves live sessions through both proxies back and forth: no client error, every acknowledged write on the final server, session state kept", async () => {
      const w = new Writers(1000);
      // Session settings and LAST_INSERT_ID() follow the session to the new server.
      const settings = await connect(p2, acme);
      await settings.query("set session sql_mode = 'ANSI_QUOTES', @@session.wait_timeout = 1234");
      // Set again after another SET: replayed last, it is the value that holds after a switch.
      await settings.query("set session sql_mode = 'TRADITIONAL'");
      await settings.query("set session sql_mode = 'ANSI_QUOTES', @@session.wait_timeout = 1234");
      const [inserted] = await settings.query<mysql.ResultSetHeader>("insert into seq values ()");
      expect(inserted.insertId).toBeGreaterThan(40);
      for (const p of [p1, p2]) for (const kind of ["plain", "prepared", "txn"] as const) w.start(`${p.id} ${kind}`, () => connect(p, acme), w[kind]);
      const pauses: number[] = [];
      for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, 300));
        pauses.push((await move()).pauseMs);
      }
      await w.stop();
      expect(w.errors).toEqual([]);
      const { server: final } = await current();
      const [state] = await settings.query<mysql.RowDataPacket[]>("select @@session.sql_mode as mode, @@session.wait_timeout as wt, last_insert_id() as lid, @@port as port");
      expect(state[0]).toMatchObject({ mode: "ANSI_QUOTES", wt: 1234, lid: inserted.insertId, port: final.port });
      const onFinal = new Set((await asAdmin(final, async (c) => (await c.query<mysql.RowDataPacket[]>(`select id from \`${acme.name}\`.items where id >= 1000`))[0])).map((r) => Number(r.id)));
      const missing = w.acked.filter((id) => !onFinal.has(id));
      expect(w.acked.length).toBeGreaterThan(50);
      expect(missing).toEqual([]);
      expect(Math.max(...pauses)).toBeLessThan(10_000);
    }, 180_000);

    it("an open transaction makes the drain time out; the caller resumes and the transaction commits", async () => {
      const c = await connect(p1, acme);
      await c.beginTransaction();
      await c.query("insert into items values (-1, 'open-txn', 'x')");
      const err = await coord.pause(acme, { timeoutMs: 1500 }).catch((e) => e);
      expect(err).toBeInstanceOf(DrainTimeoutError);
      expect(err.message).toMatch(/proxy-1 is draining .*"inTransaction":1/);
      await coord.resume(acme);
      await c.commit();
      const [rows] = await c.query<mysql.RowDataPacket[]>("select count(*) as n from items where id = -1");
      expect(Number(rows[0]!.n)).toBe(1);
      await c.query("delete from items where id = -1");
    });

    it("a temporary table is state that cannot move: the drain waits for the session (and says why), which keeps working", async () => {
      const c = await connect(p2, acme);
      await c.query("create temporary table scratch (v int)");
      const err = await coord.pause(acme, { timeoutMs: 1500 }).catch((e) => e);
      expect(err).toBeInstanceOf(DrainTimeoutError);
      expect(err.message).toMatch(/proxy-2 is draining .*"unmovableState":1/);
      await c.query("insert into scratch values (1)");
      await coord.resume(acme);
      await c.end();
      open.delete(c);
      // Once it is gone the tenant database moves again.
      expect((await move()).pauseMs).toBeLessThan(10_000);
    });

    it("a switch forced past a drain timeout ends the busy session with an error, and its transaction never commits", async () => {
      const { server: from, epoch } = await current();
      const to = from === s1 ? s2 : s1;
      const busy = await connect(p1, acme);
      const idle = await connect(p2, acme);
      await busy.beginTransaction();
      await busy.query("insert into items values (-2, 'forced', 'x')");
      await expect(coord.pause(acme, { timeoutMs: 800 })).rejects.toBeInstanceOf(DrainTimeoutError);
      await catchUp(from, to);
      await coord.switch(acme, { server: to.serverName, host: to.host, port: to.port, backendDatabase: acme.name }, epoch + 1).catch(() => undefined);
      await commitRouteIfNeeded(epoch + 1, to);
      await coord.resume(acme);
      const e = await busy.commit().catch((x) => x);
      expect(e).toBeInstanceOf(Error);
      const [rows] = await idle.query<mysql.RowDataPacket[]>("select count(*) as n, @@port as port from items where id = -2");
      expect(rows[0]).toMatchObject({ n: 0, port: to.port });
    });
  });

  if (mode === "transaction") describe("transaction pooling", () => {
    /** Server connections of acme's login on its current server. */
    const serverConnections = async () =>
      Number((await asAdmin(s1, async (c) => (await c.query<mysql.RowDataPacket[]>("select count(*) as n from information_schema.processlist where user = ?", [acme.user]))[0]))[0]!.n) +
      Number((await asAdmin(s2, async (c) => (await c.query<mysql.RowDataPacket[]>("select count(*) as n from information_schema.processlist where user = ?", [acme.user]))[0]))[0]!.n);

    it(`200 clients through both proxies share ${POOL_SIZE} server connections per proxy`, async () => {
      const clients = await Promise.all(Array.from({ length: 200 }, (_, i) => connect(i % 2 ? p2 : p1, acme)));
      const results = await Promise.all(clients.map((c, i) => c.query<mysql.RowDataPacket[]>("select ? as i, sleep(0.01) as s, database() as db", [i])));
      results.forEach(([rows], i) => expect(rows[0]).toMatchObject({ i, db: acme.name }));
      expect(new Set(clients.map((c) => c.threadId)).size).toBe(200);
      expect(await serverConnections()).toBeLessThanOrEqual(2 * POOL_SIZE);
    });

    it("each client's session settings and LAST_INSERT_ID stay its own on shared connections", async () => {
      const clients = await Promise.all(Array.from({ length: 8 }, (_, i) => connect(i % 2 ? p2 : p1, acme)));
      const want = (i: number) => (i % 2 ? { mode: "ANSI_QUOTES", tz: "+03:00" } : { mode: "STRICT_TRANS_TABLES", tz: "-05:00" });
      await Promise.all(clients.map((c, i) => c.query(`set session sql_mode = '${want(i).mode}', time_zone = '${want(i).tz}'`)));
      for (let round = 0; round < 15; round++) {
        await Promise.all(
          clients.map(async (c, i) => {
            const [ins] = await c.query<mysql.ResultSetHeader>("insert into seq values ()");
            const [rows] = await c.query<mysql.RowDataPacket[]>("select last_insert_id() as lid, @@session.sql_mode as mode, @@session.time_zone as tz");
            expect(rows[0]).toEqual({ lid: ins.insertId, mode: want(i).mode, tz: want(i).tz });
          }),
        );
      }
    });

    it("prepared statements: the ids a client holds work on whichever connection it borrows; the server keeps one statement per text per connection", async () => {
      const texts = ["select ? + 1 as n", "select concat(?, '-', ?) as s"];
      const round = async () => {
        const clients = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(i % 2 ? p2 : p1, acme)));
        for (let r = 0; r < 5; r++) {
          await Promise.all(
            clients.map(async (c, i) => {
              const [a] = await c.execute<mysql.RowDataPacket[]>(texts[0]!, [i * 100 + r]);
              expect(Number(a[0]!.n)).toBe(i * 100 + r + 1);
              const [b] = await c.execute<mysql.RowDataPacket[]>(texts[1]!, [`c${i}`, `r${r}`]);
              expect(b[0]!.s).toBe(`c${i}-r${r}`);
            }),
          );
        }
        await Promise.all(clients.map((c) => c.end()));
        for (const c of clients) open.delete(c);
      };
      const prepared = async () => Number((await asAdmin(s1, async (c) => (await c.query<mysql.RowDataPacket[]>("show global status like 'Prepared_stmt_count'"))[0]))[0]!.Value);
      await round();
      const after1 = await prepared();
      // 20 new clients with the same statements prepare nothing new on the server.
      await round();
      expect(await prepared()).toBe(after1);
    });

    it(`a client that waits longer than the queue timeout (${QUEUE_TIMEOUT_S} s) gets ERR 1040, not a reset; the others go on`, async () => {
      const holders = await Promise.all(Array.from({ length: POOL_SIZE }, () => connect(p1, acme)));
      for (const h of holders) {
        await h.beginTransaction();
        await h.query("select count(*) from items");
      }
      const late = await connect(p1, acme);
      const started = Date.now();
      const err = await late.query("select 1").catch((e) => e);
      expect(errno(err)).toBe(1040);
      expect((err as Error).message).toMatch(/pool of 3 is busy.*Raise the pool size/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(QUEUE_TIMEOUT_S * 1000 - 100);
      for (const h of holders) await h.commit();
      const [[row]] = await holders[0]!.query<mysql.RowDataPacket[]>("select 7 as n");
      expect(Number(row!.n)).toBe(7);
    });

    it(`a KILL the proxy answers itself gives back the connection borrowed for it: ${POOL_SIZE} idle sessions after one leave the pool free`, async () => {
      const killers = await Promise.all(Array.from({ length: POOL_SIZE }, () => connect(p1, acme)));
      for (const k of killers) await expect(k.query("KILL QUERY 99")).rejects.toMatchObject({ errno: 1094 });
      const next = await connect(p1, acme);
      const started = Date.now();
      const [[row]] = await next.query<mysql.RowDataPacket[]>("select 5 as n");
      expect(Number(row!.n)).toBe(5);
      expect(Date.now() - started).toBeLessThan(QUEUE_TIMEOUT_S * 1000);
    });

    it("state a next borrower must not see pins the session to its connection: a temporary table keeps working while others share the rest", async () => {
      const pinned = await connect(p2, acme);
      await pinned.query("create temporary table scratch (v int)");
      const others = await Promise.all(Array.from({ length: 10 }, () => connect(p2, acme)));
      for (let i = 0; i < 5; i++) {
        await pinned.query("insert into scratch values (?)", [i]);
        await Promise.all(others.map((c) => c.query("select count(*) from items")));
        // No other session sees the temporary table.
        await expect(others[i]!.query("select * from scratch")).rejects.toMatchObject({ errno: 1146 });
      }
      const [[row]] = await pinned.query<mysql.RowDataPacket[]>("select count(*) as n from scratch");
      expect(Number(row!.n)).toBe(5);
    });
  });
});

/** The forced switch above may time out waiting for the busy session's proxy; the route is committed either way. */
async function commitRouteIfNeeded(epoch: number, to: LocalServerOutputs): Promise<void> {
  await withCatalog(async (c) => {
    const r = await c.query("select epoch from tenantfleet.tenant_databases where tenant = $1 and database = $2", [acme.tenant, acme.database]);
    if (Number(r.rows[0].epoch) < epoch) await commitRoute(c, acme, { server: to.serverName, host: to.host, port: to.port, backendDatabase: acme.name }, epoch);
  });
}
