/** A tenant's databases: a TenantDatabase for each PostgreSQL database, and each MariaDB/MySQL one
 * where the proxies speak MySQL (the local platform so far): the engines with live migration,
 * placed on the server the fleet plan chose for it, a child of the Fleet.
 *
 * In earlier versions each tenant had a `tenantfleet:index:Tenant` component of its own between the Fleet and
 * its TenantDatabases. It held nothing (its outputs are the stack's), but it was a resource per
 * tenant: a registration, an engine step, a state write on create and ~580 bytes of state each. Its
 * TenantDatabases now name it as their former parent (an alias), so a stack made with it keeps
 * them; the next `up` deletes the empty components. */
import * as pulumi from "@pulumi/pulumi";
import type { BackupBucket } from "../dynamic-providers/backups/store";
import { TenantDatabase, connectionStringOf } from "../dynamic-providers/tenant-database";
import { clientDatabaseName } from "../proxy/catalog/routes";
import { urnOnly } from "../dynamic-providers/lazy-provider";
import type { TenantDatabaseSpec } from "../stacks/config";
import { viaBastion, type MigrationPath, type PlatformCatalog, type PlatformServer } from "./platforms";
import { platformConnectionBudget } from "../dynamic-providers/engines/postgres/settings";

/** Connections each proxy may open to a server of this kind, over all its tenant databases. */
export function serverBudgetPerProxy(platform: "local" | "aws" | "gcp", isolation: "shared" | "dedicated", proxies: number): number {
  return platformConnectionBudget(platform, isolation, proxies).perProxy;
}

/** What a tenant database needs of its server. */
export type ServerEndpoint = Pick<PlatformServer, "host" | "port" | "adminUser" | "adminPassword">;

export interface TenantArgs {
  /** The tenant's databases (all of one tenant). */
  databases: TenantDatabaseSpec[];
  /** Server of each database (by database name) and its logical name. A different server for a
   * database is a live migration of that database, never a replacement. */
  servers: Record<string, { name: string; server: ServerEndpoint }>;
  catalog: PlatformCatalog;
  proxyEndpoints: pulumi.Output<string[]>;
  /** The proxies' MySQL endpoints, when they serve MySQL: MariaDB/MySQL databases get a TenantDatabase. */
  mysqlProxyEndpoints?: pulumi.Output<string[]>;
  stack: string;
  platform: "local" | "aws" | "gcp";
  /** Cloud platforms: the bastion the provider tunnels through. */
  migrationPath?: MigrationPath;
  /** Cloud platforms: where safety backups go. */
  backupBucket?: pulumi.Output<BackupBucket>;
  rollbackWindowHours: number;
  /** Protect tenant databases: removing or renaming one fails the preview instead of dropping data. */
  protect: boolean;
  /** Proxy hosts: each gets its share of a server's connection budget. */
  proxyReplicas: number;
}

export interface TenantDatabaseOutput {
  engine: string;
  isolation: string;
  region: string;
  server: pulumi.Output<string> | string;
  /** Secret (PostgreSQL databases: through the proxies, unchanged by migrations). */
  connectionString?: pulumi.Output<string>;
  status?: pulumi.Output<string>;
  epoch?: pulumi.Output<number>;
  lastMigration?: pulumi.Output<unknown>;
}

/** A server's address as TenantDatabases take it: one Output per server, shared by all its tenant
 * databases (an Output per tenant database costs the program time at 1,000 tenants). */
const serverRefs = new WeakMap<ServerEndpoint, pulumi.Output<{ host: string; port: number; adminUser: string }>>();
function serverRef(s: ServerEndpoint) {
  let r = serverRefs.get(s);
  if (!r) serverRefs.set(s, (r = pulumi.all([s.host, s.port, s.adminUser]).apply(([host, port, adminUser]) => ({ host, port, adminUser }))));
  return r;
}

const catalogRefs = new WeakMap<PlatformCatalog, pulumi.Output<{ host: string; port: number; adminUser: string; database: string; tls?: true }>>();
function catalogRef(c: PlatformCatalog) {
  let r = catalogRefs.get(c);
  if (!r) {
    r = pulumi.all([c.host, c.port, c.adminUser, c.database]).apply(([host, port, adminUser, database]) => ({ host, port, adminUser, database, ...(c.tls ? { tls: true as const } : {}) }));
    catalogRefs.set(c, r);
  }
  return r;
}

/** The URN a tenant's component had (before 0.1): its TenantDatabases' former parent. */
const formerTenantUrn = (name: string, parent: pulumi.Resource) => pulumi.createUrn(name, "tenantfleet:index:Tenant", urnOnly(parent));

export function createTenant(name: string, parent: pulumi.ComponentResource, args: TenantArgs): Record<string, TenantDatabaseOutput> {
  const out: Record<string, TenantDatabaseOutput> = {};
  for (const db of args.databases) {
    const placed = args.servers[db.database]!;
    const endpoints = db.engine === "postgres" ? args.proxyEndpoints : db.engine === "mysql" ? args.mysqlProxyEndpoints : undefined;
    if (!endpoints || (db.engine !== "postgres" && db.engine !== "mysql")) {
      out[db.database] = { engine: db.engine, isolation: db.isolation, region: db.region, server: placed.name };
      continue;
    }
    const s = placed.server;
    const r = new TenantDatabase(
      `${name}-${db.database}`,
      {
        tenant: db.tenant,
        database: db.database,
        engine: db.engine,
        isolation: db.isolation,
        region: db.region,
        serverName: placed.name,
        server: serverRef(s),
        serverAdminPassword: s.adminPassword,
        catalog: catalogRef(args.catalog),
        catalogPassword: args.catalog.adminPassword,
        stack: args.stack,
        platform: args.platform,
        rollbackWindowHours: args.rollbackWindowHours,
        ...(db.pool ? { pool: { ...db.pool, serverBudget: serverBudgetPerProxy(args.platform, db.isolation, args.proxyReplicas) } } : {}),
        ...viaBastion(args.migrationPath),
        ...(args.backupBucket ? { backupBucket: args.backupBucket } : {}),
      },
      { parent, protect: args.protect, aliases: [{ parent: formerTenantUrn(name, parent) }] },
    );
    out[db.database] = {
      engine: db.engine,
      isolation: db.isolation,
      region: db.region,
      server: r.serverName,
      connectionString: connectionStringOf(r, endpoints, clientDatabaseName(db), db.engine),
      status: r.status,
      epoch: r.epoch,
      lastMigration: r.lastMigration,
    };
  }
  return out;
}
