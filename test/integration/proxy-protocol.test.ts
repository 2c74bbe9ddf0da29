/**
 * The PostgreSQL proxy speaks the whole protocol that real clients use, checked end to end with
 * those clients against real PostgreSQL 15 servers and real proxy processes (nothing mocked):
 * node-postgres (simple, extended, named statements, pipelining, errors, big messages), psql
 * (\copy both ways, scripts, SSL/GSSAPI negotiation, \conninfo), pgbench (-i, simple, extended,
 * prepared, pipelined scripts), LISTEN/NOTIFY across proxies, CancelRequest routed through either
 * proxy, authentication refusals, TLS, and what the admin endpoint and logs show.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import { Client, type ClientConfig, type Notification, type QueryConfig } from "pg";
import { parseDataRow } from "../../proxy/postgres/backend";
import { LocalPgFleet, type PgServer, type ProxyProcess, type TenantDb } from "../../scripts/lib/local-pg-fleet";

const PSQL = "/usr/bin/psql";
const PGBENCH = "/usr/lib/postgresql/15/bin/pgbench";

let fleet: LocalPgFleet;
let server: PgServer;
let acme: TenantDb;
let globex: TenantDb;
let p1: ProxyProcess;
let p2: ProxyProcess;
let p3: ProxyProcess; // with TLS
let tmp: string;
let certFile: string;

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "tf-proto-"));
  fleet = await LocalPgFleet.create({ stack: "proto" });
  server = await fleet.server("tenants");
  acme = await fleet.tenantDatabase(server, { tenant: "acme", database: "app" });
  globex = await fleet.tenantDatabase(server, { tenant: "globex", database: "app" });
  certFile = path.join(tmp, "proxy.crt");
  const keyFile = path.join(tmp, "proxy.key");
  const cert = await run("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", keyFile, "-out", certFile,
  ]);
  expect(cert.code, cert.stderr).toBe(0);
  [p1, p2, p3] = await Promise.all([
    fleet.startProxy("proxy-1"),
    fleet.startProxy("proxy-2"),
    fleet.startProxy("proxy-tls", { extraArgs: ["--tls-cert", certFile, "--tls-key", keyFile] }),
  ]);
}, 240_000);

afterAll(async () => {
  await fleet?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------ helpers

function config(proxy: ProxyProcess, db: TenantDb, extra: Partial<ClientConfig> = {}): ClientConfig {
  return { host: "127.0.0.1", port: proxy.port, user: db.role, password: db.password, database: db.name, connectionTimeoutMillis: 10_000, ...extra };
}

async function connect(proxy: ProxyProcess, db: TenantDb, extra: Partial<ClientConfig> = {}): Promise<Client> {
  const c = new Client(config(proxy, db, extra));
  await c.connect();
  return c;
}

/** One client, always closed. */
async function withClient<T>(proxy: ProxyProcess, db: TenantDb, fn: (c: Client) => Promise<T>, extra: Partial<ClientConfig> = {}): Promise<T> {
  const c = await connect(proxy, db, extra);
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The error a connection attempt ends with (it must fail). */
async function connectError(cfg: ClientConfig): Promise<Error & { code?: string; severity?: string }> {
  const c = new Client(cfg);
  c.on("error", () => undefined);
  try {
    await c.connect();
  } catch (e) {
    return e as Error & { code?: string };
  } finally {
    await c.end().catch(() => undefined);
  }
  throw new Error(`connecting to ${cfg.database} as ${cfg.user} succeeded but must not`);
}

/** The BackendKeyData node-postgres received (typed as private in @types/pg). */
function cancelKey(c: Client): { pid: number; secret: number } {
  const k = c as unknown as { processID: number; secretKey: number };
  return { pid: k.processID, secret: k.secretKey };
}

/**
 * The transaction status of the client's last ReadyForQuery. node-postgres rejects a query at its
 * ErrorResponse, which may arrive before the ReadyForQuery that follows it: wait for that first.
 */
async function txStatus(c: Client): Promise<string> {
  await waitFor("ReadyForQuery", () => (c as unknown as { readyForQuery: boolean }).readyForQuery, 5000);
  return c.getTransactionStatus() ?? "";
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A program with an argument array (no shell); PG* variables of this process are not inherited. */
function run(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<RunResult> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PG") && v !== undefined) base[k] = v;
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...base, PGCONNECT_TIMEOUT: "10", ...env }, timeout: timeoutMs, maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

function conninfo(proxy: ProxyProcess, db: TenantDb, extra = "sslmode=disable"): string {
  return `host=127.0.0.1 port=${proxy.port} user=${db.role} dbname=${db.name} ${extra}`;
}

function psql(proxy: ProxyProcess, db: TenantDb, args: string[], opts: { conninfo?: string; password?: string } = {}): Promise<RunResult> {
  // PGOPTIONS travels as the startup packet's options: NOTICEs (drop ... if exists) stay off stderr.
  return run(PSQL, ["-X", "-d", opts.conninfo ?? conninfo(proxy, db), ...args], { PGPASSWORD: opts.password ?? db.password, PGOPTIONS: "-c client_min_messages=warning" });
}

function pgbench(proxy: ProxyProcess, db: TenantDb, args: string[]): Promise<RunResult> {
  return run(PGBENCH, ["-h", "127.0.0.1", "-p", String(proxy.port), "-U", db.role, ...args, db.name], { PGPASSWORD: db.password, PGSSLMODE: "disable" }, 90_000);
}

async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function adminGet(proxy: ProxyProcess, p: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${proxy.adminPort}${p}`);
  return { status: res.status, type: res.headers.get("content-type") ?? "", body: await res.text() };
}

/** The value of one Prometheus sample whose labels include all of `labels` (0 when absent). */
function sample(metrics: string, name: string, labels: Record<string, string>): number {
  for (const line of metrics.split("\n")) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...m[2]!.matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return 0;
}

/** Server-side view (an admin connection straight to the server, not through the proxy). */
async function onServer<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client(server.admin());
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------- a raw protocol client (for bytes)

const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const int16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const cstr = (s: string) => Buffer.from(`${s}\0`, "utf8");
const msg = (type: string, ...parts: Buffer[]) => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from(type, "ascii"), int32(body.length + 4), body]);
};
const untyped = (code: number, ...parts: Buffer[]) => {
  const body = Buffer.concat([int32(code), ...parts]);
  return Buffer.concat([int32(body.length + 4), body]);
};
const SSL_REQUEST = untyped(80877103);
const GSSENC_REQUEST = untyped(80877104);
const cancelRequest = (pid: number, secret: number) => untyped(80877102, int32(pid), int32(secret));
const startupMessage = (params: Record<string, string>) =>
  untyped(196608, ...Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.from([0]));
const F = {
  query: (sql: string) => msg("Q", cstr(sql)),
  parse: (name: string, sql: string) => msg("P", cstr(name), cstr(sql), int16(0)),
  bind: (stmt: string, params: string[] = []) =>
    msg("B", cstr(""), cstr(stmt), int16(0), int16(params.length), ...params.flatMap((p) => [int32(Buffer.byteLength(p)), Buffer.from(p)]), int16(0)),
  describePortal: () => msg("D", Buffer.from("P"), cstr("")),
  execute: () => msg("E", cstr(""), int32(0)),
  sync: () => msg("S"),
  terminate: () => msg("X"),
};

interface Frame {
  type: string;
  body: Buffer;
}

class RawConn {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  ended = false;
  /** When set, received bytes go here instead of the buffer (streams too big to keep). */
  sink: ((d: Buffer) => void) | undefined;
  private constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on("data", (d: Buffer) => {
      if (this.sink) return this.sink(d);
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    const end = () => {
      this.ended = true;
      this.wake?.();
    };
    sock.on("end", end);
    sock.on("close", end);
    sock.on("error", end);
  }

  static open(port: number): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port }, () => resolve(new RawConn(s)));
      s.once("error", reject);
    });
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  private async need(n: number, timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed after ${this.buf.length} of ${n} bytes`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  async byte(timeoutMs = 5000): Promise<string> {
    await this.need(1, timeoutMs);
    const b = this.buf.subarray(0, 1).toString("latin1");
    this.buf = this.buf.subarray(1);
    return b;
  }

  async frame(timeoutMs = 5000): Promise<Frame> {
    await this.need(5, timeoutMs);
    const len = this.buf.readInt32BE(1);
    await this.need(1 + len, timeoutMs);
    const f = { type: String.fromCharCode(this.buf[0]!), body: Buffer.from(this.buf.subarray(5, 1 + len)) };
    this.buf = this.buf.subarray(1 + len);
    return f;
  }

  /** Frames up to and including the next ReadyForQuery. */
  async untilReady(timeoutMs = 5000): Promise<Frame[]> {
    const out: Frame[] = [];
    for (;;) {
      const f = await this.frame(timeoutMs);
      out.push(f);
      if (f.type === "Z") return out;
    }
  }

  /** Resolves when the peer closes the connection. */
  async closed(timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.ended) {
      if (Date.now() > until) throw new Error("connection still open");
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.sock.destroy();
  }
}

function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    out[String.fromCharCode(body[i]!)] = body.toString("utf8", i + 1, end);
    i = end + 1;
  }
  return out;
}

/** A client-side SCRAM-SHA-256 login (RFC 5802) over a raw connection; returns at ReadyForQuery. */
async function rawLogin(c: RawConn, db: TenantDb): Promise<Frame[]> {
  c.write(startupMessage({ user: db.role, database: db.name }));
  const sasl = await c.frame();
  expect(sasl.type).toBe("R");
  expect(sasl.body.readInt32BE(0)).toBe(10);
  expect(sasl.body.toString("utf8", 4)).toContain("SCRAM-SHA-256");
  const nonce = randomBytes(18).toString("base64");
  const first = `n,,n=,r=${nonce}`;
  c.write(msg("p", cstr("SCRAM-SHA-256"), int32(Buffer.byteLength(first)), Buffer.from(first)));
  const cont = await c.frame();
  expect(cont.body.readInt32BE(0)).toBe(11);
  const serverFirst = cont.body.toString("utf8", 4);
  const a = new Map(serverFirst.split(",").map((kv) => [kv[0]!, kv.slice(2)]));
  const salted = pbkdf2Sync(db.password, Buffer.from(a.get("s")!, "base64"), Number(a.get("i")), 32, "sha256");
  const hmac = (k: Buffer, s: string) => createHmac("sha256", k).update(s).digest();
  const clientKey = hmac(salted, "Client Key");
  const storedKey = createHash("sha256").update(clientKey).digest();
  const withoutProof = `c=biws,r=${a.get("r")}`;
  const authMessage = `n=,r=${nonce},${serverFirst},${withoutProof}`;
  const sig = hmac(storedKey, authMessage);
  const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]!));
  c.write(msg("p", Buffer.from(`${withoutProof},p=${proof.toString("base64")}`)));
  const fin = await c.frame();
  expect(fin.body.readInt32BE(0)).toBe(12);
  expect(fin.body.toString("utf8", 4)).toBe(`v=${hmac(hmac(salted, "Server Key"), authMessage).toString("base64")}`);
  const rest = await c.untilReady(10_000);
  expect(rest[0]!.type).toBe("R"); // AuthenticationOk
  expect(rest[0]!.body.readInt32BE(0)).toBe(0);
  return rest;
}

// ------------------------------------------------------------------------------------- tests

describe("node-postgres through the proxy", () => {
  it("runs a multi-statement simple query and returns one result per statement", async () => {
    await withClient(p1, acme, async (c) => {
      const results = (await c.query(`
        drop table if exists simple_items;
        create table simple_items (id int primary key, name text not null);
        insert into simple_items values (1, 'one'), (2, 'two'), (3, 'drei ü €');
        select id, name from simple_items order by id;
      `)) as unknown as { command: string; rowCount: number | null; rows: { id: number; name: string }[] }[];
      expect(results.map((r) => r.command)).toEqual(["DROP", "CREATE", "INSERT", "SELECT"]);
      expect(results[2]!.rowCount).toBe(3);
      expect(results[3]!.rows).toEqual([
        { id: 1, name: "one" },
        { id: 2, name: "two" },
        { id: 3, name: "drei ü €" },
      ]);
      const notices: string[] = [];
      c.on("notice", (n) => notices.push(n.message ?? ""));
      await c.query("do $$ begin raise notice 'hello %', 42; end $$");
      expect(notices).toEqual(["hello 42"]);
      const empty = await c.query("");
      expect(empty.rows).toEqual([]);
      expect((await c.query("select 'after empty' as s")).rows[0].s).toBe("after empty");
    });
  });

  it("binds parameters of many types in the extended protocol (text and binary results)", async () => {
    await withClient(p1, acme, async (c) => {
      const ts = new Date("2024-02-29T12:34:56.789Z");
      const r = await c.query(
        "select $1::int + 1 as i, $2::text || '!' as t, $3::text is null as isnull, $4::jsonb -> 'k' as j, $5::timestamptz as ts, $6::numeric * 2 as n, $7::int[] as arr, $8::bytea as b",
        [41, "héllo 世界", null, JSON.stringify({ k: [1, "x"] }), ts, "12345678901234567890.5", [1, 2, 3], Buffer.from([0, 1, 254, 255])],
      );
      expect(r.rows[0]).toEqual({ i: 42, t: "héllo 世界!", isnull: true, j: [1, "x"], ts, n: "24691357802469135781.0", arr: [1, 2, 3], b: Buffer.from([0, 1, 254, 255]) });
      const bin = await c.query({ text: "select $1::int4 * 2 as v, $2::text as s", values: [21, "bin"], binary: true } as QueryConfig);
      expect(bin.rows[0].v).toBe(42);
      expect(bin.rows[0].s).toBe("bin");
    });
  });

  it("reuses named prepared statements many times, and the server holds each once", async () => {
    await withClient(p1, acme, async (c) => {
      for (let i = 0; i < 300; i++) {
        const r = await c.query({ name: "double_it", text: "select $1::int * 2 as v", values: [i] });
        expect(r.rows[0].v).toBe(i * 2);
        const s = await c.query({ name: "echo_text", text: "select $1::text as s, $2::int as n", values: [`v${i}`, i] });
        expect(s.rows[0]).toEqual({ s: `v${i}`, n: i });
      }
      const held = await c.query("select name, from_sql from pg_prepared_statements order by name");
      expect(held.rows).toEqual([
        { name: "double_it", from_sql: false },
        { name: "echo_text", from_sql: false },
      ]);
    });
  });

  it("answers pipelined queries (sent without waiting) in order", async () => {
    await withClient(
      p1,
      acme,
      async (c) => {
        const qs = Array.from({ length: 200 }, (_, i) =>
          i % 2 ? c.query("select $1::int as v, pg_backend_pid() as pid", [i]) : c.query({ name: "pipe_named", text: "select $1::int as v, pg_backend_pid() as pid", values: [i] }),
        );
        const rs = await Promise.all(qs);
        expect(rs.map((r) => r.rows[0].v)).toEqual(Array.from({ length: 200 }, (_, i) => i));
        expect(new Set(rs.map((r) => r.rows[0].pid)).size).toBe(1); // one backend, one session
        // Simple-protocol queries pipelined too.
        const simple = await Promise.all(Array.from({ length: 50 }, (_, i) => c.query(`select ${i} as v`)));
        expect(simple.map((r) => r.rows[0].v)).toEqual(Array.from({ length: 50 }, (_, i) => i));
      },
      { pipeline: true } as Partial<ClientConfig>,
    );
  });

  it("keeps a session usable after an error inside a transaction (ROLLBACK, savepoints, status byte)", async () => {
    await withClient(p1, acme, async (c) => {
      await c.query("drop table if exists tx_items; create table tx_items (id int primary key)");
      await c.query("begin");
      await c.query("insert into tx_items values (1)");
      expect(await txStatus(c)).toBe("T");
      const e1 = await c.query("select 1 / 0").catch((e) => e);
      expect(e1.code).toBe("22012");
      expect(await txStatus(c)).toBe("E");
      const e2 = await c.query("insert into tx_items values (2)").catch((e) => e);
      expect(e2.code).toBe("25P02");
      expect((await c.query("rollback")).command).toBe("ROLLBACK");
      expect(await txStatus(c)).toBe("I");
      expect((await c.query("select count(*)::int as n from tx_items")).rows[0].n).toBe(0);

      await c.query("begin");
      await c.query("insert into tx_items values (10)");
      await c.query("savepoint s1");
      const dup = await c.query("insert into tx_items values ($1)", [10]).catch((e) => e);
      expect(dup.code).toBe("23505");
      await c.query("rollback to savepoint s1");
      await c.query("insert into tx_items values (11)");
      await c.query("commit");
      expect((await c.query("select array_agg(id order by id) as ids from tx_items")).rows[0].ids).toEqual([10, 11]);
      // A failed COMMIT (deferred constraint) reports the error and leaves the session idle.
      await c.query("create table if not exists tx_parent (id int primary key); create table if not exists tx_child (p int references tx_parent deferrable initially deferred)");
      await c.query("begin; insert into tx_child values (99)");
      const commitErr = await c.query("commit").catch((e) => e);
      expect(commitErr.code).toBe("23503");
      expect(await txStatus(c)).toBe("I");
      expect((await c.query("select 1 as ok")).rows[0].ok).toBe(1);
    });
  });

  it("reports an error in the middle of a pipeline to that query only; the ones after it still run", async () => {
    await withClient(
      p1,
      acme,
      async (c) => {
        const settled = await Promise.allSettled([
          c.query("select $1::int as v", [1]),
          c.query("select 1 / $1::int as v", [0]),
          c.query("select $1::int as v", [3]),
          c.query("select * from no_such_table"),
          c.query("select 5 as v"),
        ]);
        expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "fulfilled", "rejected", "fulfilled"]);
        expect((settled[1] as PromiseRejectedResult).reason.code).toBe("22012");
        expect((settled[3] as PromiseRejectedResult).reason.code).toBe("42P01");
        expect((settled[2] as PromiseFulfilledResult<{ rows: { v: number }[] }>).value.rows[0]!.v).toBe(3);
        expect((settled[4] as PromiseFulfilledResult<{ rows: { v: number }[] }>).value.rows[0]!.v).toBe(5);
        // In a pipelined transaction the error aborts the rest until the end of the transaction.
        await c.query("drop table if exists pipe_tx; create table pipe_tx (id int)");
        const tx = await Promise.allSettled([
          c.query("begin"),
          c.query("insert into pipe_tx values ($1)", [1]),
          c.query("insert into pipe_tx values ($1)", ["not a number"]),
          c.query("insert into pipe_tx values ($1)", [3]),
          c.query("commit"),
          c.query("select count(*)::int as n from pipe_tx"),
        ]);
        expect(tx.map((s) => s.status)).toEqual(["fulfilled", "fulfilled", "rejected", "rejected", "fulfilled", "fulfilled"]);
        expect((tx[2] as PromiseRejectedResult).reason.code).toBe("22P02");
        expect((tx[3] as PromiseRejectedResult).reason.code).toBe("25P02");
        expect((tx[4] as PromiseFulfilledResult<{ command: string }>).value.command).toBe("ROLLBACK");
        expect((tx[5] as PromiseFulfilledResult<{ rows: { n: number }[] }>).value.rows[0]!.n).toBe(0);
      },
      { pipeline: true } as Partial<ClientConfig>,
    );
  });

  it("passes server parameters through: startup ParameterStatus, SET application_name, options; the key is the proxy's", async () => {
    const c = new Client(config(p1, acme, { application_name: "proto-test", options: "-c statement_timeout=4321 -c search_path=public" }));
    const seen = new Map<string, string>();
    const changes: [string, string][] = [];
    let connected = false;
    c.connection.on("parameterStatus", (m: { parameterName: string; parameterValue: string }) => {
      seen.set(m.parameterName, m.parameterValue);
      if (connected) changes.push([m.parameterName, m.parameterValue]);
    });
    await c.connect();
    connected = true;
    try {
      expect(seen.get("server_version")).toMatch(/^15\./);
      expect(seen.get("application_name")).toBe("proto-test");
      expect(seen.get("session_authorization")).toBe(acme.role);
      expect(seen.get("is_superuser")).toBe("off");
      for (const p of ["client_encoding", "server_encoding", "DateStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings", "IntervalStyle"]) {
        expect(seen.get(p), p).toBeTruthy();
      }
      const shown = await c.query("select current_setting('statement_timeout') as st, current_setting('search_path') as sp, current_setting('application_name') as app, current_setting('server_version') as v, pg_backend_pid() as pid");
      expect(shown.rows[0]).toMatchObject({ st: "4321ms", sp: "public", app: "proto-test", v: seen.get("server_version") });

      await c.query("set application_name = 'renamed'");
      await c.query("set TimeZone = 'Asia/Tokyo'");
      expect(changes).toContainEqual(["application_name", "renamed"]);
      expect(changes).toContainEqual(["TimeZone", "Asia/Tokyo"]);
      expect((await c.query("show application_name")).rows[0].application_name).toBe("renamed");

      // BackendKeyData is the proxy's own (ordinal in the top bits), never the server's pid.
      const health = JSON.parse((await adminGet(p1, "/healthz")).body) as { ordinal: number };
      const { pid, secret } = cancelKey(c);
      expect(pid).not.toBe(shown.rows[0].pid);
      expect(pid >>> 20).toBe(health.ordinal);
      expect(typeof secret).toBe("number");
      const onSrv = await onServer((s) => s.query("select application_name from pg_stat_activity where pid = $1", [shown.rows[0].pid]));
      expect(onSrv.rows[0].application_name).toBe("renamed");
    } finally {
      await c.end();
    }
  });

  it("round-trips multi-megabyte messages intact: query text, bytea and text values, result sets", async () => {
    await withClient(p1, acme, async (c) => {
      // A 6 MB query text (one Query message far larger than a TCP segment).
      const literal = "x".repeat(3_000_000) + "ÿ€".repeat(500_000);
      const q = await c.query(`select length('${literal}') as n, md5('${literal}') as h`);
      expect(q.rows[0]).toEqual({ n: 4_000_000, h: createHash("md5").update(literal).digest("hex") });

      // 8 MB of random bytes as a bound bytea parameter, returned as is.
      const blob = randomBytes(8 << 20);
      const b = await c.query("select $1::bytea as b, md5($1::bytea) as h, length($1::bytea) as n", [blob]);
      expect(b.rows[0].n).toBe(blob.length);
      expect(b.rows[0].h).toBe(createHash("md5").update(blob).digest("hex"));
      expect(Buffer.compare(b.rows[0].b, blob)).toBe(0);

      // 5 MB of multi-byte text through a table and back.
      const text = Array.from({ length: 200_000 }, (_, i) => `${i}:ç漢字🙂;`).join("");
      await c.query("drop table if exists big_values; create table big_values (id int, t text)");
      await c.query("insert into big_values values (1, $1)", [text]);
      const t = await c.query("select t from big_values where id = 1");
      expect(t.rows[0].t === text).toBe(true);

      // One 10 MB DataRow, then a 24 MB result set of 24k rows.
      const one = await c.query("select repeat('ab', 5000000) as s");
      expect(one.rows[0].s.length).toBe(10_000_000);
      const many = await c.query("select i, repeat(md5(i::text), 32) as s from generate_series(1, 24000) i");
      expect(many.rowCount).toBe(24_000);
      const last = many.rows[23_999];
      expect(last.i).toBe(24_000);
      expect(last.s).toBe(createHash("md5").update("24000").digest("hex").repeat(32));
      expect((await c.query("select 'still here' as s")).rows[0].s).toBe("still here");
    });
  });
});

describe("the wire protocol byte by byte (raw client)", () => {
  /** Fails in Execute (a volatile zero is not folded away when the statement is planned at Bind). */
  const ZERO_DIVIDE = "select 1 / (random() * 0)::int";

  it("handles an extended-protocol pipeline with one Sync: an error skips to the Sync, the session continues", async () => {
    const c = await RawConn.open(p1.port);
    try {
      await rawLogin(c, acme);
      c.write(
        Buffer.concat([
          F.parse("", "select 1 as a"), F.bind(""), F.describePortal(), F.execute(),
          F.parse("", ZERO_DIVIDE), F.bind(""), F.execute(),
          F.parse("", "select 3 as c"), F.bind(""), F.execute(),
          F.sync(),
        ]),
      );
      const frames = await c.untilReady();
      expect(frames.map((f) => f.type).join("")).toBe("12TDC12EZ");
      expect(parseDataRow(frames[3]!.body)).toEqual(["1"]);
      expect(errorFields(frames[7]!.body).C).toBe("22012");
      expect(frames[8]!.body.toString()).toBe("I");

      // One Sync per statement: the error ends only its own part.
      c.write(
        Buffer.concat([
          F.parse("s_ok", "select $1::int + 1"), F.bind("s_ok", ["1"]), F.execute(), F.sync(),
          F.parse("", ZERO_DIVIDE), F.bind(""), F.execute(), F.sync(),
          F.bind("s_ok", ["41"]), F.execute(), F.sync(),
        ]),
      );
      const a = await c.untilReady();
      const b = await c.untilReady();
      const d = await c.untilReady();
      expect(a.map((f) => f.type).join("")).toBe("12DCZ");
      expect(parseDataRow(a[2]!.body)).toEqual(["2"]);
      expect(b.map((f) => f.type).join("")).toBe("12EZ");
      expect(d.map((f) => f.type).join("")).toBe("2DCZ");
      expect(parseDataRow(d[1]!.body)).toEqual(["42"]);
    } finally {
      c.close();
    }
  });

  it("reassembles messages that arrive a few bytes at a time", async () => {
    const c = await RawConn.open(p1.port);
    try {
      await rawLogin(c, acme);
      const batch = Buffer.concat([F.query("select 'split' as s"), F.parse("", "select $1::text || $2::text"), F.bind("", ["ab", "cd"]), F.execute(), F.sync()]);
      for (let i = 0; i < batch.length; i += 3) {
        c.write(batch.subarray(i, i + 3));
        await new Promise((r) => setTimeout(r, 1));
      }
      const q = await c.untilReady();
      expect(q.map((f) => f.type).join("")).toBe("TDCZ");
      expect(parseDataRow(q[1]!.body)).toEqual(["split"]);
      const e = await c.untilReady();
      expect(e.map((f) => f.type).join("")).toBe("12DCZ");
      expect(parseDataRow(e[2]!.body)).toEqual(["abcd"]);
      c.write(F.terminate());
      await c.closed();
    } finally {
      c.close();
    }
  });

  it("holds a big result back while the client does not read, instead of buffering it in the proxy", async () => {
    const c = await RawConn.open(p2.port);
    const rss = async () => sample((await adminGet(p2, "/metrics")).body, "tenantfleet_proxy_process_resident_memory_bytes", { proxy: "proxy-2" });
    try {
      await rawLogin(c, acme);
      const before = await rss();
      expect(before).toBeGreaterThan(0);
      c.sock.pause();
      const sql = "select repeat('x', 1048576) from generate_series(1, 512) /* unread */";
      c.write(F.query(sql)); // 512 MB of rows
      const stalled = () =>
        onServer(async (s) => (await s.query("select 1 from pg_stat_activity where state = 'active' and wait_event = 'ClientWrite' and query = $1", [sql])).rowCount === 1);
      await waitFor("the server to block on sending the unread result", stalled);
      await new Promise((r) => setTimeout(r, 1500));
      // Still blocked: the proxy passed the stall on to the server rather than soaking up the rows.
      expect(await stalled()).toBe(true);
      const during = await rss();
      expect(during - before, `proxy RSS grew by ${Math.round((during - before) / 2 ** 20)} MB`).toBeLessThan(64 * 2 ** 20);
      // Reading resumes: every row arrives, then ReadyForQuery, and the session goes on.
      let rows = 0;
      let bytes = 0;
      const head = Buffer.alloc(5);
      let headLen = 0;
      let skip = 0;
      const done = new Promise<void>((resolve) => {
        c.sink = (d) => {
          bytes += d.length;
          let i = 0;
          while (i < d.length) {
            if (skip > 0) {
              const n = Math.min(skip, d.length - i);
              skip -= n;
              i += n;
              continue;
            }
            const n = Math.min(5 - headLen, d.length - i);
            d.copy(head, headLen, i, i + n);
            headLen += n;
            i += n;
            if (headLen < 5) continue;
            headLen = 0;
            skip = head.readInt32BE(1) - 4;
            if (head[0] === 0x44) rows++;
            if (head[0] === 0x5a) {
              c.sink = undefined;
              resolve();
            }
          }
        };
      });
      c.sock.resume();
      await done;
      expect(rows).toBe(512);
      expect(bytes).toBeGreaterThan(512 * 2 ** 20);
      c.write(F.query("select 'after' as s"));
      const after = await c.untilReady();
      expect(parseDataRow(after.find((f) => f.type === "D")!.body)).toEqual(["after"]);
    } finally {
      c.close();
    }
  });
});

describe("psql through the proxy", () => {
  it("copies 100k rows in with \\copy and out again byte for byte", async () => {
    const lines: string[] = [];
    for (let i = 1; i <= 100_000; i++) {
      const name = i % 1000 === 0 ? "\\N" : i % 7 === 0 ? `tab\\there\\\\back slash ${i}` : i % 5 === 0 ? `line\\nbreak ü ${i}` : `name ${i} 名前`;
      lines.push(`${i}\t${name}\t${(i * 1.25).toFixed(2)}`);
    }
    const input = path.join(tmp, "copy-in.tsv");
    const output = path.join(tmp, "copy-out.tsv");
    writeFileSync(input, `${lines.join("\n")}\n`);
    const r = await psql(p1, acme, [
      "-v", "ON_ERROR_STOP=1", "-At",
      "-c", "drop table if exists copy_items; create table copy_items (id int primary key, name text, amount numeric(12,2))",
      "-c", `\\copy copy_items from '${input}'`,
      "-c", "select count(*), count(name), sum(amount) from copy_items",
      "-c", `\\copy (select * from copy_items order by id) to '${output}'`,
    ]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("COPY 100000");
    const sum = lines.reduce((s, _l, i) => s + (i + 1) * 1.25, 0);
    expect(r.stdout).toContain(`100000|99900|${sum.toFixed(2)}`);
    expect(readFileSync(output).equals(readFileSync(input))).toBe(true);
  });

  it("reports a COPY that fails half way and keeps the session going", async () => {
    const bad = path.join(tmp, "copy-bad.tsv");
    const rows = Array.from({ length: 60_000 }, (_, i) => (i === 45_000 ? "oops\tbad" : `${i}\tok`));
    writeFileSync(bad, `${rows.join("\n")}\n`);
    const script = path.join(tmp, "copy-bad.sql");
    writeFileSync(script, `drop table if exists copy_bad;\ncreate table copy_bad (id int, s text);\n\\copy copy_bad from '${bad}'\nselect 'rows=' || count(*) from copy_bad;\n`);
    const r = await psql(p1, acme, ["-v", "ON_ERROR_STOP=0", "-At", "-f", script]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/invalid input syntax for type integer: "oops"/);
    expect(r.stdout).toContain("rows=0");
  });

  it("runs a script file: DDL, a transaction with a savepoint, \\gset, PREPARE/EXECUTE; ON_ERROR_STOP stops at an error", async () => {
    const script = path.join(tmp, "script.sql");
    writeFileSync(
      script,
      [
        "drop table if exists script_items;",
        "create table script_items (id int primary key, name text not null);",
        "begin;",
        "insert into script_items values (1, 'one'), (2, 'two');",
        "savepoint s1;",
        "insert into script_items values (3, 'three');",
        "rollback to savepoint s1;",
        "commit;",
        "select count(*) as n, max(name) as top from script_items \\gset",
        "\\echo count=:n top=:top",
        "prepare get_item(int) as select name from script_items where id = $1;",
        "execute get_item(2);",
        "execute get_item(1);",
        "deallocate get_item;",
        "select :n * 10 as times_ten;",
        "\\echo done",
      ].join("\n"),
    );
    const r = await psql(p1, acme, ["-v", "ON_ERROR_STOP=1", "-At", "-q", "-f", script]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual(["count=2 top=two", "two", "one", "20", "done"]);

    const failing = path.join(tmp, "failing.sql");
    writeFileSync(failing, "select 'before';\nselect no_such_column from script_items;\nselect 'after';\n");
    const f = await psql(p1, acme, ["-v", "ON_ERROR_STOP=1", "-At", "-f", failing]);
    expect(f.code).toBe(3);
    expect(f.stdout).toContain("before");
    expect(f.stdout).not.toContain("after");
    expect(f.stderr).toMatch(/column "no_such_column" does not exist/);
  });
});

describe("LISTEN/NOTIFY", () => {
  it("gives a session's own notifications the pid the client knows (the proxy's key), so it can skip them", async () => {
    const c = await connect(p2, acme);
    const got: Notification[] = [];
    c.on("notification", (n) => got.push(n));
    try {
      await c.query("listen own_events");
      await c.query("notify own_events, 'mine'");
      await waitFor("own notification", () => got.length === 1);
      expect(got[0]!.processId).toBe(cancelKey(c).pid);
    } finally {
      await c.end();
    }
  });

  it("delivers notifications between sessions on one proxy and across two proxies, on commit only", async () => {
    const listener = await connect(p1, acme);
    const sameProxy = await connect(p1, acme);
    const otherProxy = await connect(p2, acme);
    const got: Notification[] = [];
    listener.on("notification", (n) => got.push(n));
    try {
      await listener.query("listen proto_events");
      await sameProxy.query("notify proto_events, 'from proxy 1'");
      await waitFor("notification via proxy 1", () => got.length === 1);
      expect(got[0]).toMatchObject({ channel: "proto_events", payload: "from proxy 1" });

      await otherProxy.query("select pg_notify('proto_events', $1)", ["from proxy 2"]);
      await waitFor("notification via proxy 2", () => got.length === 2);
      expect(got[1]).toMatchObject({ channel: "proto_events", payload: "from proxy 2" });

      // Inside a transaction: delivered at COMMIT, not before; a big payload arrives whole.
      const big = "p".repeat(7000);
      await otherProxy.query("begin");
      await otherProxy.query("select pg_notify('proto_events', $1)", [big]);
      await new Promise((r) => setTimeout(r, 300));
      expect(got.length).toBe(2);
      await otherProxy.query("commit");
      await waitFor("notification at commit", () => got.length === 3);
      expect(got[2]!.payload).toBe(big);

      // Rolled back: never delivered. The other direction works too.
      await otherProxy.query("begin; notify proto_events, 'rolled back'; rollback");
      const back: Notification[] = [];
      otherProxy.on("notification", (n) => back.push(n));
      await otherProxy.query("listen proto_back");
      await listener.query("notify proto_back, 'from 1 to 2'");
      await waitFor("notification to proxy 2", () => back.length === 1);
      expect(back[0]!.payload).toBe("from 1 to 2");
      expect(got.map((n) => n.payload)).not.toContain("rolled back");

      await listener.query("unlisten proto_events");
      await sameProxy.query("notify proto_events, 'after unlisten'");
      await listener.query("select 1"); // a round trip after which any notification would have arrived
      expect(got.length).toBe(3);
    } finally {
      await Promise.all([listener.end(), sameProxy.end(), otherProxy.end()]);
    }
  });
});

describe("pgbench through the proxy", () => {
  const processed = (out: string) => /number of transactions actually processed: (\d+)\/(\d+)/.exec(out);

  it("initialises and runs with -M simple, extended and prepared, and a pipelined script", async () => {
    const init = await pgbench(p1, acme, ["-i", "-s", "1", "-q"]);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stderr).toMatch(/done in/);
    expect(`${init.stdout}${init.stderr}`).not.toMatch(/error/i);
    const count = await withClient(p1, acme, (c) => c.query("select count(*)::int as n from pgbench_accounts"));
    expect(count.rows[0].n).toBe(100_000);

    for (const mode of ["simple", "extended", "prepared"]) {
      const r = await pgbench(p1, acme, ["-M", mode, "-c", "4", "-j", "2", "-t", "150", "-n"]);
      const out = `${r.stdout}\n${r.stderr}`;
      expect(r.code, `${mode}: ${out}`).toBe(0);
      expect(out, mode).not.toMatch(/error|abort/i);
      const m = processed(r.stdout);
      expect(m, `${mode}: ${out}`).not.toBeNull();
      expect(Number(m![1])).toBe(600);
      expect(Number(m![2])).toBe(600);
      expect(r.stdout).toMatch(/number of failed transactions: 0 /);
    }

    const script = path.join(tmp, "pipeline.sql");
    writeFileSync(
      script,
      [
        "\\set aid random(1, 100000 * :scale)",
        "\\set delta random(-500, 500)",
        "\\startpipeline",
        "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;",
        "SELECT :aid::int + 1;",
        "\\endpipeline",
      ].join("\n"),
    );
    for (const mode of ["extended", "prepared"]) {
      const r = await pgbench(p2, acme, ["-M", mode, "-c", "2", "-j", "2", "-t", "200", "-n", "-f", script]);
      const out = `${r.stdout}\n${r.stderr}`;
      expect(r.code, `pipeline ${mode}: ${out}`).toBe(0);
      expect(out).not.toMatch(/error|abort/i);
      expect(Number(processed(r.stdout)?.[1])).toBe(400);
    }
  });
});

describe("authentication", () => {
  it("drops a client that never finishes logging in, with 57014, after --login-timeout", async () => {
    const slow = await fleet.startProxy("proxy-slow-login", { extraArgs: ["--login-timeout", "1"] });
    try {
      const raw = await RawConn.open(slow.port);
      const started = Date.now();
      const f = await raw.frame(5000);
      expect(f.type).toBe("E");
      expect(errorFields(f.body)).toMatchObject({ C: "57014", M: "canceling authentication due to timeout" });
      await raw.closed();
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      // A client that logs in normally is not affected.
      await withClient(slow, acme, async (c) => expect((await c.query("select 1 as one")).rows[0].one).toBe(1));
    } finally {
      await slow.stop();
    }
  });

  it("refuses a wrong password with 28P01 as an ErrorResponse", async () => {
    const e = await connectError(config(p1, acme, { password: "wrong-password" }));
    expect(e.code).toBe("28P01");
    expect(e.severity).toBe("FATAL");
    expect(e.message).toBe(`password authentication failed for user "${acme.role}"`);
  });

  it("refuses unknown tenants, unknown databases and malformed names with 3D000", async () => {
    for (const database of ["app__nobody", "nope__acme", "App-Acme", "app", "app__acme__x", "__acme"]) {
      const e = await connectError(config(p1, acme, { database }));
      expect(e.code, database).toBe("3D000");
      expect(e.message, database).toBe(`database "${database}" does not exist`);
    }
  });

  it("refuses a tenant database of another engine (its route is in the same catalog) with 3D000", async () => {
    const { upsertRoute } = await import("../../proxy/catalog/routes");
    const { Client: PgClient } = await import("pg");
    const cat = new PgClient(fleet.catalogConfig);
    await cat.connect();
    try {
      await upsertRoute(cat, { tenant: "acme", database: "cache", engine: "redis", role: "acme", scramVerifier: "SCRAM-SHA-256$4096:c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", server: "r", host: "127.0.0.1", port: 1, backendDatabase: "0" });
      await waitFor("the proxy to load the redis route", async () => {
        const e = await connectError(config(p1, acme, { database: "cache__acme" }));
        return e.message.includes("redis") ? e : undefined;
      });
      const e = await connectError(config(p1, acme, { database: "cache__acme" }));
      expect(e.code).toBe("3D000");
      expect(e.message).toBe('database "cache__acme" is a redis database, not a PostgreSQL one');
    } finally {
      await cat.query("delete from tenantfleet.tenant_databases where tenant = 'acme' and database = 'cache'");
      await cat.end();
    }
  });

  it("never opens one tenant's database with another tenant's credentials", async () => {
    const cross = await connectError(config(p1, globex, { user: acme.role, password: acme.password }));
    expect(cross.code).toBe("28P01");
    const mixed = await connectError(config(p1, globex, { password: acme.password }));
    expect(mixed.code).toBe("28P01");
    const reverse = await connectError(config(p2, acme, { user: globex.role, password: globex.password }));
    expect(reverse.code).toBe("28P01");
    // The rightful owners get in, each into their own database only.
    const who = await withClient(p1, globex, (c) => c.query("select current_user as u, current_database() as d"));
    expect(who.rows[0]).toEqual({ u: globex.role, d: globex.name });
  });

  it("refuses replication connections with 0A000", async () => {
    const e = await connectError(config(p1, acme, { replication: "database" } as Partial<ClientConfig>));
    expect(e.code).toBe("0A000");
  });

  it("psql prints the FATAL message for a wrong password", async () => {
    const r = await psql(p1, acme, ["-c", "select 1"], { password: "not-it" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`FATAL:  password authentication failed for user "${acme.role}"`);
  });

  it("logs refusals with the tenant and database, counts them per tenant, and adds no metric for unknown names", async () => {
    await connectError(config(p1, globex, { user: acme.role, password: acme.password }));
    await connectError(config(p1, acme, { database: "app__ghost" }));
    const failure = await waitFor("the auth failure log line", () =>
      p1.logs.find((l) => l.msg === "authentication failed" && l.user === acme.role && l.tenant === globex.tenant),
    );
    expect(failure).toMatchObject({ tenant: "globex", database: "app", level: 40 });
    await waitFor("the closing line", () => p1.logs.some((l) => l.session === failure.session && l.msg === "closing session with an error"));
    // Every line of every session that knew its tenant carries tenant and database.
    const bySession = new Map<unknown, Record<string, unknown>[]>();
    for (const l of p1.logs) if (l.session !== undefined) bySession.set(l.session, [...(bySession.get(l.session) ?? []), l]);
    let checked = 0;
    for (const lines of bySession.values()) {
      if (!lines.some((l) => l.tenant)) continue;
      for (const l of lines) {
        expect(l, JSON.stringify(l)).toHaveProperty("tenant");
        expect(l, JSON.stringify(l)).toHaveProperty("database");
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(2);
    const ghost = await waitFor("the unknown database's log line", () =>
      p1.logs.find((l) => l.msg === "closing session with an error" && String(l.message).includes("app__ghost")),
    );
    expect(ghost).toMatchObject({ code: "3D000" });

    const metrics = (await adminGet(p1, "/metrics")).body;
    expect(sample(metrics, "tenantfleet_proxy_auth_failures_total", { tenant: "globex", database: "app" })).toBeGreaterThanOrEqual(1);
    expect(metrics).not.toMatch(/tenant="ghost"|tenant="nobody"|tenant="_unknown"/);
  });
});

describe("SSL and GSSAPI negotiation", () => {
  it("without a certificate: sslmode=require fails, prefer and gssencmode=prefer connect in the clear", async () => {
    const req = await psql(p1, acme, ["-c", "select 1"], { conninfo: conninfo(p1, acme, "sslmode=require") });
    expect(req.code).toBe(2);
    expect(req.stderr).toMatch(/server does not support SSL, but SSL was required/);
    const prefer = await psql(p1, acme, ["-At", "-c", "select 'prefer ok'", "-c", "\\conninfo"], { conninfo: conninfo(p1, acme, "sslmode=prefer") });
    expect(prefer.code, prefer.stderr).toBe(0);
    expect(prefer.stdout).toContain("prefer ok");
    expect(prefer.stdout).not.toContain("SSL connection");
    const gss = await psql(p1, acme, ["-At", "-c", "select 'gss ok'"], { conninfo: conninfo(p1, acme, "gssencmode=prefer sslmode=prefer") });
    expect(gss.code, gss.stderr).toBe(0);
    expect(gss.stdout).toContain("gss ok");
  });

  it("answers GSSENCRequest and SSLRequest with N and then takes the startup on the same connection", async () => {
    const c = await RawConn.open(p1.port);
    try {
      c.write(GSSENC_REQUEST);
      expect(await c.byte()).toBe("N");
      c.write(SSL_REQUEST);
      expect(await c.byte()).toBe("N");
      await rawLogin(c, acme);
      c.write(F.query("select current_database()"));
      const r = await c.untilReady();
      expect(parseDataRow(r.find((f) => f.type === "D")!.body)).toEqual([acme.name]);
    } finally {
      c.close();
    }
  });

  it("with a certificate: TLS for psql (sslmode=require, verify-full) and node-postgres; plain still accepted", async () => {
    const req = await psql(p3, acme, ["-At", "-c", "select 'tls ok'", "-c", "\\conninfo"], { conninfo: conninfo(p3, acme, "sslmode=require") });
    expect(req.code, req.stderr).toBe(0);
    expect(req.stdout).toContain("tls ok");
    expect(req.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    const full = await psql(p3, acme, ["-At", "-c", "select 'verified'"], { conninfo: conninfo(p3, acme, `sslmode=verify-full sslrootcert=${certFile}`) });
    expect(full.code, full.stderr).toBe(0);
    expect(full.stdout).toContain("verified");

    for (const ssl of [{ rejectUnauthorized: false }, { ca: readFileSync(certFile) }]) {
      await withClient(
        p3,
        acme,
        async (c) => {
          const stream = (c as unknown as { connection: { stream: net.Socket } }).connection.stream;
          expect(stream).toBeInstanceOf(tls.TLSSocket);
          expect((stream as tls.TLSSocket).encrypted).toBe(true);
          expect((stream as tls.TLSSocket).getProtocol()).toMatch(/^TLSv1\.[23]$/);
          const big = randomBytes(3 << 20);
          const r = await c.query("select md5($1::bytea) as h, current_user as u", [big]);
          expect(r.rows[0]).toEqual({ h: createHash("md5").update(big).digest("hex"), u: acme.role });
        },
        { ssl },
      );
    }
    const plain = await psql(p3, acme, ["-At", "-c", "select 'plain ok'", "-c", "\\conninfo"], { conninfo: conninfo(p3, acme, "sslmode=disable") });
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toContain("plain ok");
    expect(plain.stdout).not.toContain("SSL connection");
    // A wrong password over TLS is still a clean FATAL.
    const wrong = await connectError(config(p3, acme, { password: "nope", ssl: { rejectUnauthorized: false } }));
    expect(wrong.code).toBe("28P01");
  });

  it("refuses plaintext bytes sent after an SSLRequest (they could be injected by a man in the middle)", async () => {
    const c = await RawConn.open(p3.port);
    try {
      c.write(Buffer.concat([SSL_REQUEST, startupMessage({ user: acme.role, database: acme.name })]));
      const refusal = await c.frame(); // an ErrorResponse instead of 'S': no handshake, no login
      expect(refusal.type).toBe("E");
      expect(errorFields(refusal.body)).toMatchObject({ S: "FATAL", C: "08P01", M: "received unencrypted data after SSL request" });
      await c.closed();
    } finally {
      c.close();
    }
  });
});

describe("CancelRequest", () => {
  async function sendCancel(port: number, pid: number, secret: number): Promise<void> {
    const s = await RawConn.open(port);
    s.write(cancelRequest(pid, secret));
    await s.closed(5000); // the proxy closes a cancel connection without a reply, as PostgreSQL does
  }

  async function running(sql: string): Promise<boolean> {
    return onServer(async (s) => (await s.query("select 1 from pg_stat_activity where datname = $1 and state = 'active' and query = $2", [acme.name, sql])).rowCount === 1);
  }

  it("cancels a running query through the same proxy and through another proxy; a wrong secret does nothing", async () => {
    const c = await connect(p1, acme);
    try {
      const { pid, secret } = cancelKey(c);
      for (const via of [p1, p2]) {
        const sql = `select pg_sleep(30) /* via ${via.id} */`;
        const started = Date.now();
        const q = c.query(sql).then(
          () => undefined,
          (e: Error & { code?: string }) => e,
        );
        await waitFor("the query to run", () => running(sql));
        if (via === p1) {
          await sendCancel(via.port, pid, (secret ^ 0x5a5a) | 0); // wrong secret: ignored
          await sendCancel(via.port, pid + 1, secret); // wrong pid: ignored
          await new Promise((r) => setTimeout(r, 500));
          expect(await running(sql)).toBe(true);
        }
        await sendCancel(via.port, pid, secret);
        const err = await Promise.race([q, new Promise<"still running">((r) => setTimeout(() => r("still running"), 6000))]);
        if (err === "still running") {
          await sendCancel(p1.port, pid, secret); // free the session before failing
          await q;
        }
        expect(err, `cancel via ${via.id}`).toBeInstanceOf(Error);
        expect((err as Error & { code: string }).code).toBe("57014");
        expect((err as Error).message).toMatch(/canceling statement due to user request/);
        expect(Date.now() - started).toBeLessThan(5000);
        expect((await c.query("select 'usable' as s")).rows[0].s).toBe("usable");
      }
      await waitFor("the cancel log line", () => p1.logs.some((l) => l.msg === "cancel request forwarded to the server" && l.tenant === "acme" && l.database === "app"));
    } finally {
      await c.end();
    }
  });
});

describe("admin endpoint", () => {
  it("counts queries per tenant database in /metrics and reports health in /healthz", async () => {
    const before = (await adminGet(p1, "/metrics")).body;
    const labels = { tenant: "acme", database: "app", proxy: "proxy-1" };
    const q0 = sample(before, "tenantfleet_proxy_queries_total", labels);
    const c0 = sample(before, "tenantfleet_proxy_connections_total", labels);
    await withClient(p1, acme, async (c) => {
      for (let i = 0; i < 25; i++) await c.query("select $1::int", [i]);
      const during = (await adminGet(p1, "/metrics")).body;
      expect(sample(during, "tenantfleet_proxy_active_connections", labels)).toBeGreaterThanOrEqual(1);
      const health = await adminGet(p1, "/healthz");
      expect(health.status).toBe(200);
      expect(health.type).toMatch(/application\/json/);
      const h = JSON.parse(health.body);
      expect(h).toMatchObject({ proxyId: "proxy-1", catalogConnected: true, routes: 2, paused: [] });
      expect(h.ordinal).toBeGreaterThan(0);
      expect(h.sessions).toBeGreaterThanOrEqual(1);
    });
    const after = await adminGet(p1, "/metrics");
    expect(after.status).toBe(200);
    expect(after.type).toMatch(/text\/plain/);
    expect(after.body).toMatch(/^tenantfleet_proxy_queries_total\{[^}]*tenant="acme",database="app"[^}]*\} \d+$/m);
    expect(sample(after.body, "tenantfleet_proxy_queries_total", labels) - q0).toBeGreaterThanOrEqual(25);
    expect(sample(after.body, "tenantfleet_proxy_connections_total", labels) - c0).toBe(1);
    expect(sample(after.body, "tenantfleet_proxy_client_bytes_total", labels)).toBeGreaterThan(0);
    expect(sample(after.body, "tenantfleet_proxy_server_bytes_total", labels)).toBeGreaterThan(0);
    expect((await adminGet(p1, "/nope")).status).toBe(404);
  });
});

describe("after the clients are gone", () => {
  it("leaves no server connections and no sessions behind", async () => {
    await waitFor("the tenant backends to close", () =>
      onServer(async (s) => (await s.query("select 1 from pg_stat_activity where datname = any($1)", [[acme.name, globex.name]])).rowCount === 0),
    );
    for (const p of [p1, p2, p3]) {
      const h = await waitFor(`${p.id} to have no sessions`, async () => {
        const health = JSON.parse((await adminGet(p, "/healthz")).body) as { sessions: number };
        return health.sessions === 0 && health;
      });
      expect(h.sessions).toBe(0);
      const metrics = (await adminGet(p, "/metrics")).body;
      for (const tenant of ["acme", "globex"]) expect(sample(metrics, "tenantfleet_proxy_active_connections", { tenant, database: "app" }), `${p.id} ${tenant}`).toBe(0);
    }
  });
});
