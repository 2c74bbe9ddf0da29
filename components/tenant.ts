/** Tenant — one tenant's databases: a TenantDatabase for each PostgreSQL database (the engines with
 * live migration), placed on the server the fleet plan chose for it. */
import * as pulumi from "@pulumi/pulumi";
import type { BackupBucket } from "../dynamic-providers/backups/store";
import { TenantDatabase } from "../dynamic-providers/tenant-database";
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

export function createTenant(name: string, parent: pulumi.ComponentResource, args: TenantArgs): Record<string, TenantDatabaseOutput> {
  const out: Record<string, TenantDatabaseOutput> = {};
  for (const db of args.databases) {
    const placed = args.servers[db.database]!;
    if (db.engine !== "postgres") {
      out[db.database] = { engine: db.engine, isolation: db.isolation, region: db.region, server: placed.name };
      continue;
    }
    const s = placed.server;
    const r = new TenantDatabase(
      `${name}-${db.database}`,
      {
        tenant: db.tenant,
        database: db.database,
        engine: "postgres",
        isolation: db.isolation,
        region: db.region,
        serverName: placed.name,
        server: pulumi.all([s.host, s.port, s.adminUser]).apply(([host, port, adminUser]) => ({ host, port, adminUser })),
        serverAdminPassword: s.adminPassword,
        catalog: pulumi.all([args.catalog.host, args.catalog.port, args.catalog.adminUser, args.catalog.database]).apply(([host, port, adminUser, database]) => ({ host, port, adminUser, database, ...(args.catalog.tls ? { tls: true } : {}) })),
        catalogPassword: args.catalog.adminPassword,
        proxyEndpoints: args.proxyEndpoints,
        stack: args.stack,
        platform: args.platform,
        rollbackWindowHours: args.rollbackWindowHours,
        ...(db.pool ? { pool: { ...db.pool, serverBudget: serverBudgetPerProxy(args.platform, db.isolation, args.proxyReplicas) } } : {}),
        ...viaBastion(args.migrationPath),
        ...(args.backupBucket ? { backupBucket: args.backupBucket } : {}),
      },
      { parent, protect: args.protect },
    );
    out[db.database] = {
      engine: db.engine,
      isolation: db.isolation,
      region: db.region,
      server: r.serverName,
      connectionString: r.connectionString,
      status: r.status,
      epoch: r.epoch,
      lastMigration: r.lastMigration,
    };
  }
  return out;
}

export class Tenant extends pulumi.ComponentResource {
  /** Per database: engine, isolation, region, server, status and (secret) connection string. */
  public readonly databases!: Record<string, TenantDatabaseOutput>;

  constructor(name: string, args: TenantArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tenantfleet:index:Tenant", name, {}, opts);
    this.databases = createTenant(name, this, args);
    // Held once, in the stack's outputs (see Fleet).
    this.registerOutputs({});
  }
}
