/** Fleet — builds the whole fleet from the validated stack config: shared clusters and
 * dedicated servers on the stack's platform, and the `servers` stack output. */
import * as pulumi from "@pulumi/pulumi";
import * as path from "node:path";
import type { Engine } from "../dynamic-providers/engines";
import type { FleetSpec } from "../stacks/config";
import { DedicatedServer } from "./dedicated-server";
import { fleetOutput, type FleetOutputInputs } from "./fleet-output";
import { planFleet, serverNameOf } from "./fleet-plan";
import { servesMysql, servesRedis, type Platform } from "./platforms";
import { awsPlatform } from "./platforms/aws";
import { gcpPlatform } from "./platforms/gcp";
import { localPlatform } from "./platforms/local";
import { DynamicProviderHost } from "../dynamic-providers/lazy-provider";
import { ProxyFleet } from "./proxy-fleet";
import { SharedCluster } from "./shared-cluster";
import { createTenant, type ServerEndpoint, type TenantDatabaseOutput } from "./tenant";
import { viaBastion, type PlatformCatalog } from "./platforms";
import { SchemaRollout, SchemaSet } from "../dynamic-providers/schema-rollout";
import { ref } from "../dynamic-providers/schema-rollout/plan";
import type { TenantDatabase } from "../dynamic-providers/tenant-database";
import type { SchemaFiles } from "../stacks/schemas";

/** The repository root (components/..): where the proxy's sources are bundled from. */
const repoRoot = path.resolve(__dirname, "..");

export interface FleetArgs {
  /** The validated stack config (see stacks/config.ts). */
  spec: FleetSpec;
  /** Stack name; local servers keep their data under `.tenantfleet/<stack>/`. */
  stack: string;
  /** Secret (`tenantfleet:bastionPrivateKey`): how migrations reach private servers on aws and gcp. */
  bastionPrivateKey?: pulumi.Output<string>;
  /** The migration files of each database name in `spec.schemas` (stacks/schemas.ts reads them). */
  schemaFiles?: Record<string, SchemaFiles>;
}

/** One server in the `servers` output. */
export interface ServerOutput {
  engine: Engine;
  region: string;
  role: "shared" | "dedicated";
  /** For dedicated servers: the tenant database it holds, `<tenant>/<database>`. */
  tenantDatabase?: string;
  host: pulumi.Output<string>;
  port: pulumi.Output<number>;
  adminUser: pulumi.Output<string>;
  /** Secret. */
  adminPassword: pulumi.Output<string>;
}

export interface FleetResult {
  sharedClusters: SharedCluster[];
  dedicatedServers: DedicatedServer[];
  servers: Record<string, ServerOutput>;
  /** PostgreSQL endpoints at the top (the shape before other engines), MySQL's under `mysql`. */
  proxies: { endpoints: pulumi.Output<string[]>; adminEndpoints: pulumi.Output<string[]>; mysql?: { endpoints: pulumi.Output<string[]> }; redis?: { endpoints: pulumi.Output<string[]> } };
  tenantDatabases: Record<string, Record<string, TenantDatabaseOutput>>;
  /** Secret. */
  catalogUrl: pulumi.Output<string>;
  /** The `fleet` stack output: the documented contract for other repos (fleet-output.ts). */
  contract: FleetOutputInputs;
}

function platformFor(parent: Fleet, args: FleetArgs): Platform {
  const { spec, stack } = args;
  if (spec.platform === "local") return localPlatform(stack);
  if (!spec.cloud) throw new Error(`platform ${spec.platform}: the validated config has no tenantfleet:${spec.platform} settings`);
  const cloudArgs = { spec: { ...spec, cloud: spec.cloud }, stack, bastionPrivateKey: args.bastionPrivateKey, repoRoot, parent };
  return spec.platform === "aws" ? awsPlatform(cloudArgs) : gcpPlatform(cloudArgs);
}

export function createFleet(parent: Fleet, args: FleetArgs): FleetResult {
  const platform = platformFor(parent, args);
  const instances = !!platform.redisInstances;
  const plan = planFleet(args.spec, instances);
  const servers: Record<string, ServerOutput> = {};
  const sharedClusters = plan.sharedClusters.map((c) => {
    const cluster = new SharedCluster(c.name, { engine: c.engine, region: c.region, platform, ...(c.instances.length ? { instances: c.instances } : {}) }, { parent });
    servers[c.name] = {
      engine: c.engine,
      region: c.region,
      role: "shared",
      host: cluster.host,
      port: cluster.port,
      adminUser: cluster.adminUser,
      adminPassword: cluster.adminPassword,
    };
    for (const i of c.instances) {
      const s = cluster.instances[i.name]!;
      servers[i.name] = { engine: c.engine, region: c.region, role: "shared", tenantDatabase: `${i.tenant}/${i.database}`, host: s.host, port: s.port, adminUser: s.adminUser, adminPassword: s.adminPassword };
    }
    return cluster;
  });
  const dedicatedServers = plan.dedicatedServers.map((d) => {
    const server = new DedicatedServer(
      d.name,
      { tenant: d.tenant, database: d.database, engine: d.engine, region: d.region, platform, ...(d.memoryMb ? { memoryMb: d.memoryMb } : {}) },
      { parent },
    );
    servers[d.name] = {
      engine: d.engine,
      region: d.region,
      role: "dedicated",
      tenantDatabase: `${d.tenant}/${d.database}`,
      host: server.host,
      port: server.port,
      adminUser: server.adminUser,
      adminPassword: server.adminPassword,
    };
    return server;
  });

  const catalog = platform.controlCatalog(parent);
  const mysql = servesMysql(args.spec);
  const redis = instances && servesRedis(args.spec);
  const proxyFleet = new ProxyFleet("proxies", { replicas: args.spec.proxyReplicas, catalogUrl: catalog.url, platform, mysql, ...(redis ? { redis } : {}) }, { parent });
  const byServerName = new Map<string, ServerEndpoint>();
  sharedClusters.forEach((c, i) => {
    byServerName.set(plan.sharedClusters[i]!.name, c);
    for (const [name, s] of Object.entries(c.instances)) byServerName.set(name, s);
  });
  dedicatedServers.forEach((d, i) => byServerName.set(plan.dedicatedServers[i]!.name, d));
  const tenantDatabases: FleetResult["tenantDatabases"] = {};
  const schemas = schemaSets(parent, args, catalog, platform);
  const tenants = [...new Set(args.spec.databases.map((d) => d.tenant))];
  for (const tenant of tenants) {
    const databases = args.spec.databases.filter((d) => d.tenant === tenant);
    const placement: Record<string, { name: string; server: ServerEndpoint }> = {};
    for (const d of databases) {
      const name = serverNameOf(d, instances);
      placement[d.database] = { name, server: byServerName.get(name)! };
    }
    tenantDatabases[tenant] = createTenant(
      tenant,
      parent,
      {
        databases,
        servers: placement,
        catalog,
        proxyEndpoints: proxyFleet.endpoints,
        ...(proxyFleet.mysqlEndpoints ? { mysqlProxyEndpoints: proxyFleet.mysqlEndpoints } : {}),
        ...(proxyFleet.redisEndpoints ? { redisProxyEndpoints: proxyFleet.redisEndpoints } : {}),
        stack: args.stack,
        platform: args.spec.platform,
        migrationPath: platform.migrationPath,
        ...(platform.backupBucket ? { backupBucket: platform.backupBucket } : {}),
        rollbackWindowHours: args.spec.rollbackWindowHours,
        protect: args.spec.protectTenantDatabases,
        proxyReplicas: args.spec.proxyReplicas,
        after: schemas.after,
        registered: schemas.registered,
      },
    );
  }
  schemas.rollouts(byServerName);
  return {
    sharedClusters,
    dedicatedServers,
    servers,
    proxies: {
      endpoints: proxyFleet.endpoints,
      adminEndpoints: proxyFleet.adminEndpoints,
      ...(proxyFleet.mysqlEndpoints ? { mysql: { endpoints: proxyFleet.mysqlEndpoints } } : {}),
      ...(proxyFleet.redisEndpoints ? { redis: { endpoints: proxyFleet.redisEndpoints } } : {}),
    },
    tenantDatabases,
    catalogUrl: catalog.url,
    contract: fleetOutput({
      platform: platform.name,
      postgresEndpoints: proxyFleet.endpoints,
      ...(proxyFleet.mysqlEndpoints ? { mysqlEndpoints: proxyFleet.mysqlEndpoints } : {}),
      ...(proxyFleet.redisEndpoints ? { redisEndpoints: proxyFleet.redisEndpoints } : {}),
      tenantDatabases,
    }),
  };
}

/**
 * Per database name with migrations (`tenantfleet:schemas`): a SchemaSet, which the name's
 * TenantDatabases are registered after (a new one starts at the head), and a SchemaRollout, which
 * depends on them all (it applies pending files after this run's moves, on the servers they end on).
 */
function schemaSets(parent: Fleet, args: FleetArgs, catalog: PlatformCatalog, platform: Platform) {
  const specs = args.spec.schemas ?? [];
  const catalogAddress = pulumi.all([catalog.host, catalog.port, catalog.adminUser, catalog.database]).apply(([host, port, adminUser, database]) => ({ host, port, adminUser, database, ...(catalog.tls ? { tls: true as const } : {}) }));
  const after: Record<string, pulumi.Output<string>> = {};
  const made: Record<string, TenantDatabase[]> = {};
  for (const s of specs) {
    const files = args.schemaFiles?.[s.database];
    if (!files) throw new Error(`schemas.${s.database}: its migration files were not read (stacks/schemas.ts loadSchemaFiles)`);
    const set = new SchemaSet(`schema-${s.database}`, { database: s.database, engine: s.engine, files: files.files, ...(files.seed ? { seed: files.seed } : {}), catalog: catalogAddress, catalogPassword: catalog.adminPassword, ...viaBastion(platform.migrationPath) }, { parent });
    after[s.database] = set.urn;
    made[s.database] = [];
  }
  return {
    after,
    registered: (database: string, r: TenantDatabase) => made[database]?.push(r),
    rollouts(byServerName: Map<string, ServerEndpoint>) {
      const instances = !!platform.redisInstances;
      for (const s of specs) {
        const dbs = args.spec.databases.filter((d) => d.database === s.database);
        const names = [...new Set(dbs.map((d) => serverNameOf(d, instances)))].sort();
        const servers = pulumi.all(Object.fromEntries(names.map((n) => { const e = byServerName.get(n)!; return [n, pulumi.all([e.host, e.port, e.adminUser]).apply(([host, port, adminUser]) => ({ host, port, adminUser }))]; })));
        const serverPasswords = pulumi.secret(pulumi.all(Object.fromEntries(names.map((n) => [n, byServerName.get(n)!.adminPassword]))));
        new SchemaRollout(
          `schema-rollout-${s.database}`,
          {
            database: s.database,
            engine: s.engine,
            files: args.schemaFiles![s.database]!.files.map(ref),
            tenants: dbs.map((d) => d.tenant).sort(),
            policy: s.policy,
            servers,
            serverPasswords,
            catalog: catalogAddress,
            catalogPassword: catalog.adminPassword,
            ...viaBastion(platform.migrationPath),
          },
          { parent, dependsOn: made[s.database] },
        );
      }
    },
  };
}

export class Fleet extends pulumi.ComponentResource {
  /** Every server, keyed by server name: engine, region, role, host, port, admin user and
   * (secret) admin password. */
  public readonly servers!: Record<string, ServerOutput>;
  public readonly sharedClusters!: SharedCluster[];
  public readonly dedicatedServers!: DedicatedServer[];
  /** The proxy fleet's endpoints (`host:port`). */
  public readonly proxies!: FleetResult["proxies"];
  /** Per tenant → database: engine, isolation, region, server, status, connection string (secret). */
  public readonly tenantDatabases!: FleetResult["tenantDatabases"];
  /** Secret: the control catalog's URL. */
  public readonly catalogUrl!: pulumi.Output<string>;
  /** The documented contract for other repos: proxies per engine, per tenant → database placement
   * and (secret) connection string. See components/fleet-output.ts. */
  public readonly contract!: FleetOutputInputs;

  constructor(name: string, args: FleetArgs, opts?: pulumi.ComponentResourceOptions) {
    // Created before the component, as a top-level resource: its URN is the one stacks have held
    // since it was introduced, whatever the Fleet's name.
    const providers = opts?.providers ?? [new DynamicProviderHost()];
    super("tenantfleet:index:Fleet", name, {}, { ...opts, providers });
    const r = createFleet(this, args);
    this.servers = r.servers;
    this.sharedClusters = r.sharedClusters;
    this.dedicatedServers = r.dedicatedServers;
    this.proxies = r.proxies;
    this.tenantDatabases = r.tenantDatabases;
    this.catalogUrl = r.catalogUrl;
    this.contract = r.contract;
    // The stack exports these (stacks/index.ts): registered here as well, the state would hold the
    // fleet's outputs twice, every connection string included.
    this.registerOutputs({});
  }
}
