/**
 * The dynamic providers through an SSH bastion, as on the cloud platforms where servers and the
 * catalog have private addresses only: a real OpenSSH server (local-sshd.ts) stands in for the
 * bastion; the ControlCatalog provider creates the catalog schema through it; the TenantDatabase
 * provider creates a tenant database and route through it, then moves the database to another
 * server under load through two real proxies, and deletes it; a wrong or missing bastion key
 * fails before anything is touched.
 *
 * On loopback the servers are also reachable directly, so "through the tunnel" is shown three
 * ways: sshd's own log names a direct-tcpip channel to each server's and the catalog's port;
 * every TCP connect this process makes during a provider call is recorded, as is the server
 * every pg_dump/pg_restore it starts is given, and none goes to a server's or the catalog's port
 * (only to sshd and to the tunnel's loopback ends); and the addresses the providers hand to
 * others (the catalog URL proxies use, the route they follow, the subscription's conninfo the
 * target replicates with) are the servers' own, never a tunnel end. No listening socket of this
 * process outlives a call.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { existsSync, mkdtempSync, promises as fs, rmSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { LocalPgFleet, type PgServer, type ProxyProcess } from "../../scripts/lib/local-pg-fleet";
import { generateKeyPair, startLocalSshd, type KeyPair, type LocalSshd } from "../../scripts/lib/local-sshd";
import { LoadGenerator, compareIds, prepareLoadTables, storedIds } from "../../scripts/lib/load";
import { provider as catalogProvider } from "../../dynamic-providers/control-catalog/provider";
import type { ControlCatalogInputs, ControlCatalogOutputs } from "../../dynamic-providers/control-catalog/types";
import { provider as tenantProvider } from "../../dynamic-providers/tenant-database/provider";
import type { TenantDatabaseInputs } from "../../dynamic-providers/tenant-database/types";
import { type StoredInputs, type StoredOutputs } from "../../dynamic-providers/tenant-database/state";
import { TunnelError, type Endpoint } from "../../dynamic-providers/tunnel/ssh-tunnel";
import { CATALOG_VERSION } from "../../proxy/catalog/schema";
import { loadRoute, type Route } from "../../proxy/catalog/routes";

/** A catalog database of its own (LocalPgFleet's `tenantfleet_catalog` is made without the provider). */
const CATALOG_DB = "tunnel_catalog";
const key = { tenant: "acme", database: "app" };

let sshd: LocalSshd;
let intruder: KeyPair;
let scratch: string;
let fleet: LocalPgFleet;
let cat: PgServer;
let a: PgServer;
let b: PgServer;
let p1: ProxyProcess;
let p2: ProxyProcess;
/** The ControlCatalog provider's outputs (test 1); the proxies and the TenantDatabase use them. */
let catalog: ControlCatalogOutputs;
/** The TenantDatabase's outputs as Pulumi would have saved them after the last successful call. */
let acme: { id: string; outs: StoredOutputs };

// ---------------------------------------------------------------------------------------------
// Every TCP connect this process makes (pg, ssh2, the proxies' clients: all go through
// net.Socket.prototype.connect), so a provider call can be checked for connections that bypass
// the tunnel.
const connects: Endpoint[] = [];
const realConnect = net.Socket.prototype.connect;

function recordConnects(): void {
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    const [first, second] = args;
    if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
      connects.push({ host: typeof second === "string" ? second : "localhost", port: Number(first) });
    } else if (first && typeof first === "object" && "port" in first) {
      const o = first as { host?: string; port: number | string };
      connects.push({ host: o.host ?? "localhost", port: Number(o.port) });
    }
    return (realConnect as (...a: unknown[]) => net.Socket).apply(this, args);
  } as typeof realConnect;
}

// And every child process, for pg_dump / pg_restore: the server they connect to is their -p.
const { spawned } = vi.hoisted(() => ({ spawned: [] as Array<{ command: string; args: readonly string[] }> }));
vi.mock("node:child_process", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:child_process")>();
  const spawn = ((command: string, ...rest: unknown[]) => {
    spawned.push({ command, args: Array.isArray(rest[0]) ? (rest[0] as string[]) : [] });
    return (real.spawn as (...a: unknown[]) => unknown)(command, ...rest);
  }) as typeof real.spawn;
  return { ...real, spawn };
});

interface Watched<T> {
  value: T;
  /** TCP connects of this process. */
  connected: Endpoint[];
  /** pg_dump / pg_restore runs: the port each connected to. */
  pgTools: Array<{ tool: string; port: number }>;
}

/** Run `fn` and return what it resolved to, with the connections this process and its pg tools made meanwhile. */
async function watched<T>(fn: () => Promise<T>): Promise<Watched<T>> {
  const from = connects.length;
  const fromSpawned = spawned.length;
  const value = await fn();
  const pgTools = spawned
    .slice(fromSpawned)
    .filter((s) => /\/pg_(dump|restore)$/.test(s.command))
    .map((s) => ({ tool: path.basename(s.command), port: Number(s.args[s.args.indexOf("-p") + 1]) }));
  return { value, connected: connects.slice(from), pgTools };
}

// ---------------------------------------------------------------------------------------------
// sshd's log: every direct-tcpip channel (one per forwarded connection) with its target.

async function logSize(): Promise<number> {
  return (await sshd.log()).length;
}

/** Target ports of the direct-tcpip channels sshd logged since `from` (a log length). */
async function channelsSince(from: number): Promise<number[]> {
  const log = (await sshd.log()).slice(from);
  return [...log.matchAll(/server_request_direct_tcpip: originator \S+ port \d+, target (\S+) port (\d+)/g)].map((m) => Number(m[2]));
}

/** sshd's log since `from` once it matches `re` (sshd writes it asynchronously); fails after 5 s. */
async function waitForLog(from: number, re: RegExp): Promise<string> {
  for (const started = Date.now(); ; await sleep(50)) {
    const log = (await sshd.log()).slice(from);
    if (re.test(log)) return log;
    if (Date.now() - started > 5_000) throw new Error(`sshd's log never matched ${re}:\n${log}`);
  }
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

// ---------------------------------------------------------------------------------------------
// Listening TCP sockets this process owns (by inode: /proc/net/tcp* ∩ /proc/self/fd).

async function listeningPorts(): Promise<number[]> {
  const mine = new Set<string>();
  for (const fd of await fs.readdir("/proc/self/fd")) {
    const link = await fs.readlink(`/proc/self/fd/${fd}`).catch(() => "");
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) mine.add(m[1]!);
  }
  const ports: number[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const lines = (await fs.readFile(file, "utf8").catch(() => "")).split("\n").slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "0A") continue; // 0A: LISTEN
      if (mine.has(f[9]!)) ports.push(parseInt(f[1]!.split(":")[1]!, 16));
    }
  }
  return ports.sort((x, y) => x - y);
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve("connected")));
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

// ---------------------------------------------------------------------------------------------

const bastion = () => ({ host: sshd.host, port: sshd.port, username: sshd.username, hostKeyFingerprint: sshd.hostKeyFingerprint });
const serverRef = (s: PgServer) => ({ host: s.host, port: s.port, adminUser: s.adminUser });
/** The real ports of what the providers must only reach through the bastion. */
const privatePorts = () => [cat.port, a.port, b.port];

/** A TenantDatabase's inputs placing acme/app on `s`, reaching everything through the bastion. */
function tenantArgs(s: PgServer, isolation: "shared" | "dedicated", privateKey: string | undefined): Record<string, unknown> {
  return {
    ...key,
    engine: "postgres",
    isolation,
    region: "local",
    serverName: s.serverName,
    server: serverRef(s),
    serverAdminPassword: s.adminPassword,
    catalog: { host: catalog.host, port: catalog.port, adminUser: catalog.adminUser, database: catalog.database },
    catalogPassword: catalog.adminPassword,
    stack: fleet.stack,
    // The tunnel does not depend on the platform; "local" keeps safety backups in the test's state
    // dir (a cloud platform would send them to its bucket).
    platform: "local",
    bastion: bastion(),
    bastionPrivateKey: privateKey,
    rollbackWindowHours: 24,
    resourceUrn: "",
  };
}

/** `check` as the engine runs it before create/update: the inputs with their plan, as stored (the
 * credentials kept in this process for the create/update that follows). */
async function checked(olds: Partial<TenantDatabaseInputs> | StoredOutputs, news: Record<string, unknown>): Promise<StoredInputs> {
  const r = await tenantProvider.check!(olds, news);
  expect(r.failures ?? []).toEqual([]);
  return r.inputs as StoredInputs;
}

async function withCatalogDb<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  return fleet.withAdmin(cat, CATALOG_DB, fn);
}

const route = (): Promise<Route | undefined> => withCatalogDb((c) => loadRoute(c, key));
const migrationsStarted = (): Promise<number> =>
  withCatalogDb(async (c) => Number((await c.query("select count(*) as n from tenantfleet.migrations where tenant = $1 and database = $2", [key.tenant, key.database])).rows[0].n));
const databasesOn = (s: PgServer): Promise<string[]> =>
  fleet.withAdmin(s, "postgres", async (c) => (await c.query<{ datname: string }>("select datname from pg_database where datname like 'app\\_\\_acme%' order by 1")).rows.map((r) => r.datname));

function endpoints(o: StoredOutputs) {
  return [p1, p2].map((p) => ({ host: "127.0.0.1", port: p.port, user: o.role, password: o.access.password, database: "app__acme" }));
}

/**
 * The connections of a provider call: none to a private port (this process's own, and its
 * pg_dump/pg_restore runs'), some to tunnel ends, which are all closed afterwards.
 */
async function expectTunnelled({ connected, pgTools }: Watched<unknown>, listeningBefore: number[]): Promise<void> {
  const ports = connected.map((e) => e.port);
  expect(ports.filter((p) => privatePorts().includes(p))).toEqual([]);
  expect(pgTools.filter((t) => privatePorts().includes(t.port))).toEqual([]);
  expect(ports).toContain(sshd.port);
  const known = new Set([sshd.port, ...privatePorts(), ...[p1, p2].flatMap((p) => (p ? [p.port] : []))]);
  const tunnelEnds = [...new Set(connected.filter((e) => e.host === "127.0.0.1" && !known.has(e.port)).map((e) => e.port))];
  expect(tunnelEnds.length).toBeGreaterThan(0);
  for (const t of pgTools) expect(tunnelEnds).toContain(t.port);
  expect(await listeningPorts()).toEqual(listeningBefore);
  for (const p of tunnelEnds) expect(await connectOutcome(p)).toBe("ECONNREFUSED");
}

beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), "tf-tunnel-migration-"));
  sshd = await startLocalSshd();
  intruder = await generateKeyPair(scratch, "intruder");
  fleet = await LocalPgFleet.create({ stack: "tunnel-migration" });
  cat = fleet.catalog;
  a = await fleet.server("shared-a");
  b = await fleet.server("dedicated-b");
  recordConnects();
});

afterAll(async () => {
  net.Socket.prototype.connect = realConnect;
  await fleet?.close();
  await sshd?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("ControlCatalog through the bastion", () => {
  it("creates the catalog schema through the tunnel; its url names the catalog's own address", async () => {
    const inputs: ControlCatalogInputs = {
      serverName: cat.serverName,
      host: cat.host,
      port: cat.port,
      adminUser: cat.adminUser,
      adminPassword: cat.adminPassword,
      database: CATALOG_DB,
      bastion: bastion(),
      bastionPrivateKey: sshd.privateKey,
    };
    const checkedInputs = (await catalogProvider.check!({}, inputs)).inputs as ControlCatalogInputs;
    const listening = await listeningPorts();
    const logFrom = await logSize();
    const call = await watched(() => catalogProvider.create(checkedInputs));
    catalog = call.value.outs as ControlCatalogOutputs;

    // The schema is there (read directly on the server, not through the tunnel).
    const tables = await withCatalogDb(async (c) => (await c.query<{ t: string }>("select table_name as t from information_schema.tables where table_schema = 'tenantfleet' order by 1")).rows.map((r) => r.t));
    expect(tables).toEqual(expect.arrayContaining(["migrations", "pauses", "proxies", "proxy_acks", "schema_migrations", "tenant_databases"]));
    expect(catalog.schemaVersion).toBe(CATALOG_VERSION);
    // sshd opened channels to the catalog's port, and nothing else.
    const channels = await channelsSince(logFrom);
    expect(channels.length).toBeGreaterThanOrEqual(2); // `postgres` to create the database, then the catalog itself
    expect(new Set(channels)).toEqual(new Set([cat.port]));
    await expectTunnelled(call, listening);
    // What proxies are given is the catalog's real address, not the tunnel's loopback end.
    const url = new URL(catalog.url);
    expect(url.hostname).toBe(cat.host);
    expect(Number(url.port)).toBe(cat.port);
    expect(url.pathname).toBe(`/${CATALOG_DB}`);

    // The proxies follow that catalog by that URL (directly, as they would in the cloud network).
    p1 = await fleet.startProxy("proxy-1", { env: { TENANTFLEET_CATALOG_URL: catalog.url } });
    p2 = await fleet.startProxy("proxy-2", { env: { TENANTFLEET_CATALOG_URL: catalog.url } });
  });
});

describe("TenantDatabase through the bastion", () => {
  it("create makes the database, role and route through the tunnel; the route names the server's own address", async () => {
    const inputs = await checked({}, tenantArgs(a, "shared", sshd.privateKey));
    const listening = await listeningPorts();
    const logFrom = await logSize();
    // The stored inputs hold no credential; the outputs hold each secret once.
    expect(Object.keys(inputs).filter((k) => /password|privatekey|resourceurn/i.test(k))).toEqual([]);
    const call = await watched(() => tenantProvider.create(inputs));
    acme = { id: call.value.id, outs: call.value.outs as StoredOutputs };
    expect(acme.outs.access).toEqual({ serverAdminPassword: a.adminPassword, catalogPassword: catalog.adminPassword, bastionPrivateKey: sshd.privateKey, password: expect.any(String) });
    // The credentials and the role's password only in `access` (one secret: additionalSecretOutputs).
    expect(Object.keys(acme.outs).filter((k) => /password|verifier|privatekey/i.test(k))).toEqual([]);

    expect(await databasesOn(a)).toEqual(["app__acme"]);
    const r = await route();
    expect(r).toMatchObject({ server: a.serverName, host: a.host, port: a.port, backendDatabase: "app__acme", epoch: 1, status: "ready" });
    expect(new Set(await channelsSince(logFrom))).toEqual(new Set([a.port, cat.port]));
    await expectTunnelled(call, listening);

    // The tenant logs in through a proxy with the connection string's password.
    const c = new Client(endpoints(acme.outs)[0]!);
    await c.connect();
    try {
      expect((await c.query("select current_database() as d, current_user as u")).rows[0]).toEqual({ d: "app__acme", u: "app__acme" });
    } finally {
      await c.end();
    }
  });

  it("update to another server migrates under load through the tunnel: no client error, every acknowledged row on the target, the route names the target's own port", async () => {
    await prepareLoadTables(endpoints(acme.outs)[0]!);
    const c = new Client(endpoints(acme.outs)[0]!);
    await c.connect();
    // Some data with its own sequence, so the initial copy has work to do.
    await c.query("create table documents (id bigserial primary key, body text not null)");
    await c.query("insert into documents (body) select repeat(md5(g::text), 8) from generate_series(1, 20000) g");
    await c.end();

    const news = await checked(acme.outs, tenantArgs(b, "dedicated", sshd.privateKey));
    expect(news.plan).toMatch(/^migrate shared-a .* → dedicated-b/);
    const load = new LoadGenerator({ endpoints: endpoints(acme.outs), clients: 4 });
    load.start();
    await sleep(400);
    // The subscription's conninfo, read on the target while it exists (on a connection opened
    // before the call, so the connect recorder sees nothing of it).
    const conninfos = new Set<string>();
    const watcher = new Client(b.admin("postgres"));
    await watcher.connect();
    let watching = true;
    const watchDone = (async () => {
      while (watching) {
        for (const row of (await watcher.query<{ c: string }>("select subconninfo as c from pg_subscription")).rows) conninfos.add(row.c);
        await sleep(10);
      }
    })();
    const listening = await listeningPorts();
    const logFrom = await logSize();
    const started = Date.now();
    const call = await watched(() => tenantProvider.update!(acme.id, acme.outs, news)).finally(() => (watching = false));
    const updateMs = Date.now() - started;
    await watchDone;
    await watcher.end();
    await sleep(300);
    const report = await load.stop();
    const outs = call.value.outs as StoredOutputs;

    expect(report.errors).toEqual([]);
    expect(report.acknowledged).toBeGreaterThan(20);
    expect(outs.lastMigration).toMatchObject({ status: "done", method: "native", from: a.serverName, to: b.serverName });
    expect(outs.lastMigration!.verification?.ok).toBe(true);
    expect(outs.access.password).toBe(acme.outs.access.password);

    // The route proxies follow: the target's own address, never a tunnel end (on loopback both
    // hosts are 127.0.0.1, so the port tells them apart).
    const r = (await route())!;
    expect(r).toMatchObject({ server: b.serverName, host: b.host, port: b.port, epoch: 2, status: "ready" });
    const tunnelEnds = call.connected.filter((e) => ![sshd.port, p1.port, p2.port].includes(e.port)).map((e) => e.port);
    expect(tunnelEnds).not.toContain(r.port);

    // Every acknowledged row is on the target, nothing extra.
    const { missing, extra } = compareIds(load.acknowledgedIds(), await storedIds(b.admin(r.backendDatabase)));
    expect(missing).toEqual([]);
    expect(extra).toEqual([]);
    expect(await fleet.withAdmin(b, r.backendDatabase, async (x) => Number((await x.query("select count(*) as n from documents")).rows[0].n))).toBe(20000);
    // The target replicated from the source's own address, not through a tunnel end of this process.
    expect(conninfos.size).toBe(1);
    const conninfo = [...conninfos][0]!;
    expect(conninfo).toMatch(new RegExp(`host='${escapeRe(a.host)}' port=${a.port} `));
    for (const p of tunnelEnds) expect(conninfo).not.toMatch(new RegExp(`port=${p}\\b`));
    // The forward subscription is gone. The source copy is fenced against the tenant's login and
    // kept current by the way back, which reads from the target's own address too.
    expect(await fleet.withAdmin(b, "postgres", async (x) => (await x.query("select 1 from pg_subscription")).rowCount)).toBe(0);
    const back = await fleet.withAdmin(a, "app__acme", async (x) => (await x.query<{ subname: string; subenabled: boolean; subconninfo: string }>("select subname, subenabled, subconninfo from pg_subscription")).rows);
    expect(back.map((x) => [x.subname, x.subenabled])).toEqual([[outs.lastMigration!.keptCurrentBy, true]]);
    expect(back[0]!.subconninfo).toMatch(new RegExp(`host='${escapeRe(b.host)}' port=${b.port} `));
    for (const p of tunnelEnds) expect(back[0]!.subconninfo).not.toMatch(new RegExp(`port=${p}\\b`));
    await expect(new Client({ host: a.host, port: a.port, user: outs.role, password: outs.access.password, database: "app__acme" }).connect()).rejects.toThrow(/not permitted to log in|permission denied/);
    expect(outs.retained).toEqual(expect.arrayContaining([expect.objectContaining({ kind: "fenced_copy", backendDatabase: "app__acme", keptCurrent: { stream: outs.lastMigration!.keptCurrentBy, from: { server: b.serverName, backendDatabase: r.backendDatabase } } })]));

    // sshd carried this process's connections to both servers and the catalog (pg_dump and
    // pg_restore included, which the connect recorder cannot see).
    const channels = new Set(await channelsSince(logFrom));
    expect(channels).toEqual(new Set([a.port, b.port, cat.port]));
    expect(call.pgTools.map((t) => t.tool)).toEqual(expect.arrayContaining(["pg_dump", "pg_restore"])); // safety backup, schema copy
    await expectTunnelled(call, listening);
    console.log(JSON.stringify({ updateMs, acknowledged: report.acknowledged, pauseMs: outs.lastMigration!.pauseMs, longestStallMs: report.longest.ms, channels: (await channelsSince(logFrom)).length }));
    acme = { id: acme.id, outs };
  });

  it("a wrong bastion key fails the update with the tunnel's auth error before anything is touched", async () => {
    const before = await route();
    const started = await migrationsStarted();
    const dbsOnA = await databasesOn(a);
    const logFrom = await logSize();
    const news = await checked(acme.outs, tenantArgs(a, "shared", intruder.privateKey));
    const err = await tenantProvider.update!(acme.id, acme.outs, news).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TunnelError);
    expect((err as TunnelError).kind).toBe("auth");
    expect((err as TunnelError).message).toMatch(new RegExp(`SSH bastion 127\\.0\\.0\\.1:${sshd.port} refused authentication for ${sshd.username}@127\\.0\\.0\\.1`));
    // Nothing moved: the route, the catalog's migrations, the would-be target; no channel was opened.
    expect(await route()).toEqual(before);
    expect(await migrationsStarted()).toBe(started);
    expect(await databasesOn(a)).toEqual(dbsOnA);
    expect(await channelsSince(logFrom)).toEqual([]);
    // sshd saw the intruder's key and refused it; nobody logged in.
    const refused = await waitForLog(logFrom, new RegExp(`Failed publickey for ${sshd.username} from 127\\.0\\.0\\.1 port \\d+ ssh2: ED25519 ${escapeRe(intruder.fingerprint)}`));
    expect(refused).not.toMatch(/Accepted publickey/);
  });

  it("a bastion without bastionPrivateKey fails with the message naming tenantfleet:bastionPrivateKey", async () => {
    const before = await route();
    const started = await migrationsStarted();
    const logFrom = await logSize();
    const news = await checked(acme.outs, tenantArgs(a, "shared", undefined));
    await expect(tenantProvider.update!(acme.id, acme.outs, news)).rejects.toThrow(/no private key is configured: set it with `pulumi config set --secret tenantfleet:bastionPrivateKey < key`/);
    const { bastionPrivateKey: _, ...catalogInputs } = catalog;
    await expect(catalogProvider.create({ ...catalogInputs, database: "never_made" })).rejects.toThrow(/tenantfleet:bastionPrivateKey/);
    expect(await route()).toEqual(before);
    expect(await migrationsStarted()).toBe(started);
    expect(await channelsSince(logFrom)).toEqual([]);
    expect(await fleet.withAdmin(cat, "postgres", async (c) => (await c.query("select 1 from pg_database where datname = 'never_made'")).rowCount)).toBe(0);
  });

  it("delete through the tunnel: safety backup, the database and the fenced copy dropped (its way back ended first), the route removed", async () => {
    const listening = await listeningPorts();
    const logFrom = await logSize();
    const call = await watched(() => tenantProvider.delete!(acme.id, acme.outs));
    expect(await route()).toBeUndefined();
    expect(await databasesOn(b)).toEqual([]);
    expect(await databasesOn(a)).toEqual([]);
    for (const s of [a, b]) expect(await fleet.withAdmin(s, "postgres", async (x) => (await x.query("select slot_name from pg_replication_slots")).rows)).toEqual([]);
    expect(new Set(await channelsSince(logFrom))).toEqual(new Set([a.port, b.port, cat.port]));
    expect(call.pgTools.map((t) => t.tool)).toEqual(["pg_dump"]); // the safety backup before delete
    await expectTunnelled(call, listening);
    const backups = path.join(fleet.root, fleet.stack, "backups", key.tenant, key.database);
    expect(existsSync(backups) && (await fs.readdir(backups)).some((f) => f.endsWith("-deleted.dump"))).toBe(true);
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
