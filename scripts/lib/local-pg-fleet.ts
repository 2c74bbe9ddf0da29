/**
 * A throwaway PostgreSQL fleet on this machine for tests and benchmarks: real servers made by the
 * LocalServer provider's own code (same settings as `npm start`), a control catalog on one of
 * them, tenant databases with their roles and SCRAM verifiers, and real proxy processes.
 * Everything lives under one temp state dir and `close()` removes it all, even after a failure.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import { Client, type ClientConfig } from "pg";
import { provider } from "../../dynamic-providers/local-server/provider";
import type { LocalServerInputs, LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import { migrateCatalog } from "../../proxy/catalog/schema";
import { upsertRoute, type Route, type TenantDbKey, clientDatabaseName } from "../../proxy/catalog/routes";
import { makeVerifier } from "../../proxy/postgres/scram";
import { ident, literal } from "../../proxy/postgres/session-state";
import { projectRoot } from "../../dynamic-providers/local-server/state";
import { PgMigration, type PgMigrationArgs } from "../../dynamic-providers/engines/postgres/migration";
import { withAdmin, type PgServerAccess } from "../../dynamic-providers/engines/postgres/tenant-db";
import { migrate, targetDatabaseName, type MigrateOptions, type MigrateRequest, type MigrationRecord } from "../../dynamic-providers/migration/orchestrator";

export interface PgServer extends LocalServerOutputs {
  admin(database?: string): ClientConfig;
}

/** What the migration engine needs of a server. */
export function serverAccess(s: PgServer): PgServerAccess {
  return { name: s.serverName, host: s.host, port: s.port, adminUser: s.adminUser, adminPassword: s.adminPassword };
}

/** Everything a migration of one tenant database needs (plain data: a child process can take it as JSON). */
export interface MigrationPlan {
  engine: PgMigrationArgs;
  req: MigrateRequest;
  catalog: ClientConfig;
  backupDir: string;
}

export interface TenantDb extends TenantDbKey {
  role: string;
  password: string;
  /** The name clients connect with: `<database>__<tenant>`. */
  name: string;
}

export interface ProxyProcess {
  id: string;
  port: number;
  /** The MySQL listener's port (started with `--mysql-listen`), else 0. */
  mysqlPort: number;
  /** The Redis listener's port (started with `--redis-listen`), else 0. */
  redisPort: number;
  adminPort: number;
  child: ChildProcess;
  /** Every JSON log line the proxy printed. */
  logs: Record<string, unknown>[];
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export class LocalPgFleet {
  readonly servers: PgServer[] = [];
  readonly proxies: ProxyProcess[] = [];
  catalog!: PgServer;
  private constructor(readonly root: string, readonly stack: string) {}

  static async create(opts: { stack?: string } = {}): Promise<LocalPgFleet> {
    const root = mkdtempSync(path.join(os.tmpdir(), "tf-pg-"));
    // Servers run as the unprivileged postgres account when we are root: it must reach its dir.
    chmodSync(root, 0o755);
    process.env.TENANTFLEET_STATE_DIR = root;
    const f = new LocalPgFleet(root, opts.stack ?? "fleet");
    try {
      f.catalog = await f.server("catalog");
      const c = new Client(f.catalog.admin("postgres"));
      await c.connect();
      try {
        await c.query("create database tenantfleet_catalog");
      } finally {
        await c.end();
      }
      const cc = new Client(f.catalogConfig);
      await cc.connect();
      try {
        await migrateCatalog(cc);
      } finally {
        await cc.end();
      }
    } catch (e) {
      await f.close();
      throw e;
    }
    return f;
  }

  get catalogConfig(): ClientConfig {
    return this.catalog.admin("tenantfleet_catalog");
  }

  get catalogUrl(): string {
    const c = this.catalog;
    return `postgres://${c.adminUser}:${encodeURIComponent(c.adminPassword)}@${c.host}:${c.port}/tenantfleet_catalog`;
  }

  /** A real PostgreSQL server, as LocalServer creates it. */
  async server(name: string): Promise<PgServer> {
    const inputs: LocalServerInputs = { engine: "postgres", serverName: name, stack: this.stack, region: "local", role: "shared" };
    const checked = await provider.check!({}, inputs);
    if (checked.failures?.length) throw new Error(checked.failures.map((f) => f.reason).join("; "));
    const r = await provider.create(checked.inputs as LocalServerInputs);
    const o = r.outs as LocalServerOutputs;
    const s: PgServer = {
      ...o,
      admin: (database = "postgres") => ({ host: o.host, port: o.port, user: o.adminUser, password: o.adminPassword, database }),
    };
    this.servers.push(s);
    return s;
  }

  /**
   * A tenant database on `server`: its role (with a SCRAM verifier, never a plaintext password on
   * the server) owning a database of the same client-facing name, and its route in the catalog.
   */
  async tenantDatabase(server: PgServer, k: TenantDbKey & { role?: string; password?: string; verifier?: string }): Promise<TenantDb> {
    const role = k.role ?? k.tenant;
    const password = k.password ?? `pw-${k.tenant}-${k.database}-${Math.random().toString(36).slice(2, 10)}`;
    const verifier = k.verifier ?? makeVerifier(password);
    const name = clientDatabaseName(k);
    await this.ensureTenantDatabase(server, name, role, verifier);
    const c = new Client(this.catalogConfig);
    await c.connect();
    try {
      await upsertRoute(c, { tenant: k.tenant, database: k.database, engine: "postgres", role, scramVerifier: verifier, server: server.serverName, host: server.host, port: server.port, backendDatabase: name });
    } finally {
      await c.end();
    }
    await this.servedByProxies(name);
    return { tenant: k.tenant, database: k.database, role, password, name };
  }

  /**
   * Wait until every running proxy knows the route of `name` (each follows the catalog by
   * LISTEN/NOTIFY, which a loaded machine can deliver late): a login through it as a role that does not
   * exist gets past the route lookup and fails authentication (28P01) without ever joining the
   * tenant's sessions or opening a server connection. "Does not exist" (3D000) means not yet.
   */
  async servedByProxies(name: string, timeoutMs = 30_000): Promise<void> {
    for (const p of this.proxies.filter((x) => x.child.exitCode === null && x.child.signalCode === null)) {
      for (const end = Date.now() + timeoutMs; ; ) {
        const c = new Client({ host: "127.0.0.1", port: p.port, user: "tenantfleet_route_probe", password: "-", database: name, connectionTimeoutMillis: 5000 });
        c.on("error", () => undefined);
        const code = await c.connect().then(
          () => undefined,
          (e: { code?: string }) => e.code,
        );
        await c.end().catch(() => undefined);
        if (code !== "3D000") break;
        if (Date.now() > end) throw new Error(`proxy ${p.id} did not learn the route of ${name} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** The database and role on a server, with the catalog's verifier (a copy target, say). */
  async ensureTenantDatabase(server: PgServer, name: string, role: string, verifier: string): Promise<void> {
    const c = new Client(server.admin());
    await c.connect();
    try {
      const exists = (await c.query("select 1 from pg_roles where rolname = $1", [role])).rowCount;
      await c.query(`${exists ? "alter" : "create"} role ${ident(role)} login password ${literal(verifier)}`);
      if (!(await c.query("select 1 from pg_database where datname = $1", [name])).rowCount) {
        await c.query(`create database ${ident(name)} owner ${ident(role)}`);
      }
    } finally {
      await c.end();
    }
  }

  async route(k: TenantDbKey): Promise<Route> {
    const c = new Client(this.catalogConfig);
    await c.connect();
    try {
      const { loadRoute } = await import("../../proxy/catalog/routes");
      const r = await loadRoute(c, k);
      if (!r) throw new Error(`no route for ${clientDatabaseName(k)}`);
      return r;
    } finally {
      await c.end();
    }
  }

  /** Run `fn` on an admin connection to `database` on `s`, closed afterwards. */
  withAdmin<T>(s: PgServer, database: string, fn: (c: Client) => Promise<T>): Promise<T> {
    return withAdmin(serverAccess(s), database, fn);
  }

  /** Copies left by this fleet's moves and kept current since (what a TenantDatabase's `retained` holds). */
  private readonly keptCopies = new Map<string, { server: string; backendDatabase: string; stream: string; from: { server: string; backendDatabase: string } }[]>();

  /** The migration of `key`, as the catalog routes it now, from `from` to `to` (a switch back when
   * `to` holds a copy kept current from where `key` is now, as the TenantDatabase provider does). */
  async migrationPlan(key: TenantDbKey, from: PgServer, to: PgServer): Promise<MigrationPlan> {
    const route = await this.route(key);
    const kept = (this.keptCopies.get(`${key.tenant}/${key.database}`) ?? []).find(
      (k) => k.server === to.serverName && k.from.server === route.server && k.from.backendDatabase === route.backendDatabase,
    );
    return {
      engine: {
        source: serverAccess(from),
        target: serverAccess(to),
        from: { backendDatabase: route.backendDatabase, role: route.role, verifier: route.scramVerifier },
        targetDatabase: targetDatabaseName(key, route.epoch + 1),
        ...(kept ? { standby: { backendDatabase: kept.backendDatabase, stream: kept.stream } } : {}),
      },
      req: { key, fromServer: from.serverName, toServer: to.serverName, epoch: route.epoch },
      catalog: this.catalogConfig,
      backupDir: path.join(this.root, "backups"),
    };
  }

  /** Move `key` from `from` to `to` with the real engine and orchestrator (`backups`: a bucket store
   * for the safety backup; `wayBack: false`: leave the old copy as it was at the cutover, as a move
   * off a dedicated server does, and take a dump instead). */
  async migrate(
    key: TenantDbKey,
    from: PgServer,
    to: PgServer,
    log: MigrateOptions["log"],
    opts: Pick<MigrateOptions, "backups"> & { wayBack?: boolean; /** In a process of its own, as `pulumi up` runs it (scripts/lib/migration-process.ts). */ ownProcess?: boolean } = {},
  ): Promise<MigrationRecord> {
    const { wayBack, ownProcess, ...rest } = opts;
    const p = await this.migrationPlan(key, from, to);
    if (wayBack !== undefined) p.engine = { ...p.engine, wayBack };
    const record = ownProcess ? await migrateInProcess(p, log) : await migrate(new PgMigration(p.engine), p.req, { catalog: p.catalog, backupDir: p.backupDir, log, ...rest });
    const now = await this.route(key);
    const id = `${key.tenant}/${key.database}`;
    const others = (this.keptCopies.get(id) ?? []).filter((k) => !(k.server === now.server && k.backendDatabase === now.backendDatabase));
    if (record.keptCurrentBy) others.push({ server: from.serverName, backendDatabase: p.engine.from.backendDatabase, stream: record.keptCurrentBy, from: { server: now.server, backendDatabase: now.backendDatabase } });
    this.keptCopies.set(id, others);
    return record;
  }

  /** Stop a server (pg_ctl stop -m fast): its clients see their connections end. */
  async stopServer(s: PgServer): Promise<void> {
    const { resolveLayout } = await import("../../dynamic-providers/local-server/provider");
    const { localRuntime } = await import("../../dynamic-providers/engines/local-runtime");
    await (await localRuntime("postgres")).stop(await resolveLayout(s));
  }

  /** Start a stopped server again, on the same port with the same data. */
  async startServer(s: PgServer): Promise<void> {
    const { resolveLayout } = await import("../../dynamic-providers/local-server/provider");
    const { localRuntime } = await import("../../dynamic-providers/engines/local-runtime");
    await (await localRuntime("postgres")).start(await resolveLayout(s));
  }

  /** Start a real proxy process; resolves once it prints "proxy ready". */
  async startProxy(id: string, opts: { port?: number; adminPort?: number; extraArgs?: string[]; env?: Record<string, string>; nodeArgs?: string[]; /** A built proxy (the cloud VMs' bundle) instead of proxy/main.ts. */ entry?: string } = {}): Promise<ProxyProcess> {
    const root = projectRoot();
    const entry = opts.entry ? [opts.entry] : ["--import", "tsx", path.join(root, "proxy/main.ts")];
    const child = spawn(
      process.execPath,
      [...(opts.nodeArgs ?? []), ...entry, "--id", id, "--listen", `127.0.0.1:${opts.port ?? 0}`, "--admin", `127.0.0.1:${opts.adminPort ?? 0}`, "--shutdown-grace", "5", ...(opts.extraArgs ?? [])],
      { cwd: root, env: { ...process.env, TENANTFLEET_CATALOG_URL: this.catalogUrl, TENANTFLEET_LOG_LEVEL: "info", ...opts.env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const logs: Record<string, unknown>[] = [];
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const ready = new Promise<{ port: number; mysqlPort: number; redisPort: number; adminPort: number }>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          logs.push(rec);
          if (rec.msg === "proxy ready") resolve({ port: Number(rec.port), mysqlPort: Number(rec.mysqlPort ?? 0), redisPort: Number(rec.redisPort ?? 0), adminPort: Number(rec.adminPort) });
        } catch {
          /* not a log line */
        }
      });
      child.once("exit", (code) => reject(new Error(`proxy ${id} exited with ${code} before it was ready: ${stderr.trim()}`)));
    });
    const { port, mysqlPort, redisPort, adminPort } = await ready;
    const p: ProxyProcess = {
      id,
      port,
      mysqlPort,
      redisPort,
      adminPort,
      child,
      logs,
      stop: async (signal = "SIGTERM") => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once("exit", r));
        child.kill(signal);
        await exited;
      },
    };
    this.proxies.push(p);
    return p;
  }

  async close(): Promise<void> {
    for (const p of this.proxies) await p.stop().catch(() => undefined);
    for (const s of this.servers.reverse()) await provider.delete!(`${s.stack}/${s.dirName}`, s).catch(() => undefined);
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Run the migration `p` in a child process (migration-process.ts); its log lines passed to `log`. */
async function migrateInProcess(p: MigrationPlan, log: MigrateOptions["log"]): Promise<MigrationRecord> {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(projectRoot(), "scripts/lib/migration-process.ts")], {
    cwd: projectRoot(),
    env: { ...process.env, MIGRATION_ARGS: JSON.stringify(p) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let record: MigrationRecord | undefined;
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    if (line.startsWith("record ")) record = JSON.parse(line.slice("record ".length)) as MigrationRecord;
    else if (line.startsWith("log ")) {
      const [, level, ...text] = line.split(" ");
      log(text.join(" "), level === "warn" ? "warn" : "info");
    }
  });
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  if (code !== 0 || !record) throw new Error(`the migration process exited with ${code}: ${err.trim()}`);
  return record;
}
