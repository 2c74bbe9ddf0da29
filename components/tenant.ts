/** A tenant's databases: a TenantDatabase for each PostgreSQL database, each MariaDB/MySQL one
 * where the proxies speak MySQL and each Redis one where they speak Redis (the local platform so far): the engines with live migration,
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
import { platformConnectionBudget, type PooledEngine } from "../dynamic-providers/engines/connection-budget";

/** Connections each proxy may open to a server of this kind, over all its tenant databases. */
export function serverBudgetPerProxy(engine: PooledEngine, platform: "local" | "aws" | "gcp", isolation: "shared" | "dedicated", proxies: number): number {
  return platformConnectionBudget(engine, platform, isolation, proxies).perProxy;
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
  /** The proxies' Redis endpoints, when they serve Redis: Redis databases get a TenantDatabase. */
  redisProxyEndpoints?: pulumi.Output<string[]>;
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
  /** Per database name with schema migrations: what its TenantDatabases are registered after (the
   * SchemaSet's URN, resolved once its step is done), so a new one is created at the schema's head. */
  after?: Record<string, pulumi.Output<string>>;
  /** Told of each TenantDatabase made (the schema rollouts depend on them). */
  registered?: (database: string, r: TenantDatabase) => void;
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

/**
 * An Output's value, secrecy and unknowns without its dependencies: what a TenantDatabase input
 * carries when the resources it comes from are named once, in `dependsOn` (`dependsOnBoth`).
 *
 * Pulumi stores, per input property, the URNs of the resources its value came from
 * (`propertyDependencies`), beside the resource's `dependencies`. A TenantDatabase's server
 * address, the server's admin password, the catalog's address and the catalog's password each
 * named their resource again: four URNs (~580 bytes) per tenant database, 15 % of its state, in a
 * checkpoint the file backend rewrites after every step. The order they gave is kept whole by
 * `dependsOn` on the same resources: a TenantDatabase is created after, and deleted before, its
 * server and the catalog, and its `dependencies` are the same as before.
 *
 * Built on Output's constructor and `promise(withUnknowns)` (what `pulumi.secret` and
 * `pulumi.unsecret` are built on; not in the SDK's typings), so a value unknown at preview stays
 * unknown; test/unit/tenant-inputs.test.ts holds it to that.
 */
export function valueOnly<T>(o: pulumi.Output<T>): pulumi.Output<T> {
  const inner = o as unknown as { promise(withUnknowns: boolean): Promise<T>; isKnown: Promise<boolean>; isSecret: Promise<boolean> };
  const OutputCtor = pulumi.Output as unknown as new (resources: Set<pulumi.Resource>, value: Promise<T>, isKnown: Promise<boolean>, isSecret: Promise<boolean>, allResources: Promise<Set<pulumi.Resource>>) => pulumi.Output<T>;
  return new OutputCtor(new Set(), inner.promise(true), inner.isKnown, inner.isSecret, Promise.resolve(new Set()));
}

/** The resources a server's and the catalog's Outputs come from, as `dependsOn` (an Output's
 * resources are dependencies; its value, `[]`, names none). One per server. */
const dependsOnRefs = new WeakMap<Reference<unknown>, pulumi.Output<pulumi.Resource[]>>();
function dependsOnBoth(server: Reference<unknown>, catalog: Reference<unknown>): pulumi.Output<pulumi.Resource[]> {
  let d = dependsOnRefs.get(server);
  if (!d) dependsOnRefs.set(server, (d = pulumi.all([server.whole, catalog.whole]).apply(() => [] as pulumi.Resource[])));
  return d;
}

/** Per server and per catalog, one set of Outputs shared by all their tenant databases (an Output
 * per tenant database costs the program time at 1,000 tenants). */
interface Reference<T> {
  /** The address, without dependencies. */
  address: pulumi.Output<T>;
  /** The admin password (secret), without dependencies. */
  password: pulumi.Output<string>;
  /** Both, with their dependencies. */
  whole: pulumi.Output<unknown>;
}

/** A server's or the catalog's Reference from its address and admin password (both with their dependencies). */
function reference<T>(address: pulumi.Output<T>, password: pulumi.Output<string>): Reference<T> {
  return { address: valueOnly(address), password: valueOnly(password), whole: pulumi.all([address, password]) };
}

const serverRefs = new WeakMap<ServerEndpoint, Reference<{ host: string; port: number; adminUser: string }>>();
function serverRef(s: ServerEndpoint) {
  let r = serverRefs.get(s);
  if (!r) {
    const address = pulumi.all([s.host, s.port, s.adminUser]).apply(([host, port, adminUser]) => ({ host, port, adminUser }));
    serverRefs.set(s, (r = reference(address, s.adminPassword)));
  }
  return r;
}

const catalogRefs = new WeakMap<PlatformCatalog, Reference<{ host: string; port: number; adminUser: string; database: string; tls?: true }>>();
function catalogRef(c: PlatformCatalog) {
  let r = catalogRefs.get(c);
  if (!r) {
    const address = pulumi.all([c.host, c.port, c.adminUser, c.database]).apply(([host, port, adminUser, database]) => ({ host, port, adminUser, database, ...(c.tls ? { tls: true as const } : {}) }));
    catalogRefs.set(c, (r = reference(address, c.adminPassword)));
  }
  return r;
}

/**
 * `value`, available only once `after` is: a TenantDatabase given it is registered (and so created
 * or updated) after the resource `after` comes from has finished its step, without naming that
 * resource in its state (no dependency: ~110 bytes per tenant database, see valueOnly). Used for a
 * database name's SchemaSet, which puts the files a new tenant database is created with in the
 * catalog. One per database name and catalog, shared by the name's tenant databases.
 */
const ordered = new WeakMap<pulumi.Output<string>, WeakMap<pulumi.Output<unknown>, pulumi.Output<unknown>>>();
function orderedAfter<T>(value: pulumi.Output<T>, after: pulumi.Output<string>): pulumi.Output<T> {
  let byValue = ordered.get(after);
  if (!byValue) ordered.set(after, (byValue = new WeakMap()));
  let o = byValue.get(value) as pulumi.Output<T> | undefined;
  if (!o) byValue.set(value, (o = valueOnly(pulumi.all([value, after]).apply(([v]) => v as T))));
  return o;
}

/** The URN a tenant's component had (before 0.1): its TenantDatabases' former parent. */
const formerTenantUrn = (name: string, parent: pulumi.Resource) => pulumi.createUrn(name, "tenantfleet:index:Tenant", urnOnly(parent));

export function createTenant(name: string, parent: pulumi.ComponentResource, args: TenantArgs): Record<string, TenantDatabaseOutput> {
  const out: Record<string, TenantDatabaseOutput> = {};
  for (const db of args.databases) {
    const placed = args.servers[db.database]!;
    const endpoints = { postgres: args.proxyEndpoints, mysql: args.mysqlProxyEndpoints, redis: args.redisProxyEndpoints, mongodb: undefined }[db.engine];
    if (!endpoints || db.engine === "mongodb") {
      out[db.database] = { engine: db.engine, isolation: db.isolation, region: db.region, server: placed.name };
      continue;
    }
    const server = serverRef(placed.server);
    const catalog = catalogRef(args.catalog);
    const after = args.after?.[db.database];
    const r = new TenantDatabase(
      `${name}-${db.database}`,
      {
        tenant: db.tenant,
        database: db.database,
        engine: db.engine,
        isolation: db.isolation,
        region: db.region,
        serverName: placed.name,
        server: server.address,
        serverAdminPassword: server.password,
        catalog: after ? orderedAfter(catalog.address, after) : catalog.address,
        catalogPassword: catalog.password,
        stack: args.stack,
        platform: args.platform,
        rollbackWindowHours: args.rollbackWindowHours,
        ...(db.pool ? { pool: { ...db.pool, serverBudget: serverBudgetPerProxy(db.engine === "mysql" ? "mysql" : "postgres", args.platform, db.isolation, args.proxyReplicas) } } : {}),
        ...viaBastion(args.migrationPath),
        ...(args.backupBucket ? { backupBucket: args.backupBucket } : {}),
      },
      { parent, protect: args.protect, aliases: [{ parent: formerTenantUrn(name, parent) }], dependsOn: dependsOnBoth(server, catalog) },
    );
    args.registered?.(db.database, r);
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
