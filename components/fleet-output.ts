/**
 * The `fleet` stack output: the contract other infrastructure repos read through a
 * `pulumi.StackReference`. Its shape only grows; a field is never renamed or removed without a new
 * `version`. Everything else the stack exports (`servers`, `proxies`, `tenantDatabases`,
 * `catalogUrl`) is operational detail for this repo's own scripts and may change.
 *
 * Secrets are at the leaves in this stack's state and `pulumi stack output fleet`, but a
 * StackReference reports secrecy per top-level output: `fleet` holds secrets, so the consumer's
 * `getOutput("fleet")` is secret as a whole, and so is every `apply` on it. Read the plain fields
 * with `pulumi.unsecret`, one at a time (never on the whole object, which holds the connection
 * strings); see test/fixtures/consumer/index.ts.
 *
 * ```ts
 * const ref = new pulumi.StackReference("organization/tenantfleet/production");
 * const fleet = ref.requireOutput("fleet") as pulumi.Output<FleetOutput>;
 * const url = fleet.apply((f) => f.tenants["acme"]?.["app"]?.connectionString); // secret
 * const region = pulumi.unsecret(fleet.apply((f) => f.tenants["acme"]?.["app"]?.region)); // plain
 * ```
 */
import * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../dynamic-providers/engines";
import type { TenantDatabaseOutput } from "./tenant";

export const FLEET_OUTPUT_VERSION = 1;

/** The proxies applications connect through, for one engine's wire protocol. */
export interface FleetProxyEndpoints {
  /** `host:port` of every proxy (locally one per proxy process; in the cloud the load balancer). */
  endpoints: string[];
}

/** One tenant database, as applications and other repos see it. */
export interface FleetTenantDatabase {
  engine: Engine;
  isolation: "shared" | "dedicated";
  /** The region the database lives in now (the stack's logical region name, e.g. `eu-west`). */
  region: string;
  /** Secret. Through the proxy fleet: unchanged by migrations. Present for the engines the proxy
   * serves on the stack's platform (PostgreSQL; MySQL and Redis on the local platform so far: a
   * Redis URL names the first proxy, `proxies.redis.endpoints` lists them all); the others are
   * placed but not yet proxied, and have none. */
  connectionString?: string;
}

export interface FleetOutput {
  version: typeof FLEET_OUTPUT_VERSION;
  /** `local`, `aws` or `gcp`. */
  platform: string;
  /** Per engine the proxy fleet serves. */
  proxies: Partial<Record<Engine, FleetProxyEndpoints>>;
  /** Per tenant → database. */
  tenants: Record<string, Record<string, FleetTenantDatabase>>;
}

/** What the contract takes of each tenant database the Tenant component reports. */
type TenantDatabaseFacts = Pick<TenantDatabaseOutput, "engine" | "isolation" | "region" | "connectionString">;

/**
 * Built as a plain object holding outputs, not one `pulumi.Output`: a stack output keeps its secrets
 * at the leaves that way, so only the connection strings are ciphertext in the state and
 * `pulumi stack output fleet` shows everything else in the clear.
 */
export function fleetOutput(args: {
  platform: string;
  /** Endpoints of the proxies that speak the PostgreSQL protocol. */
  postgresEndpoints: pulumi.Output<string[]>;
  /** Endpoints of the proxies that speak the MySQL protocol, when the fleet serves it. */
  mysqlEndpoints?: pulumi.Output<string[]>;
  /** Endpoints of the proxies that speak the Redis protocol, when the fleet serves it. */
  redisEndpoints?: pulumi.Output<string[]>;
  tenantDatabases: Record<string, Record<string, TenantDatabaseFacts>>;
}): FleetOutputInputs {
  const tenants: FleetOutputInputs["tenants"] = {};
  for (const [tenant, dbs] of Object.entries(args.tenantDatabases)) {
    tenants[tenant] = {};
    for (const [database, d] of Object.entries(dbs)) {
      tenants[tenant][database] = {
        engine: d.engine as Engine,
        isolation: d.isolation as FleetTenantDatabase["isolation"],
        region: d.region,
        ...(d.connectionString ? { connectionString: d.connectionString } : {}),
      };
    }
  }
  const proxies: FleetOutputInputs["proxies"] = { postgres: { endpoints: args.postgresEndpoints } };
  if (args.mysqlEndpoints) proxies.mysql = { endpoints: args.mysqlEndpoints };
  if (args.redisEndpoints) proxies.redis = { endpoints: args.redisEndpoints };
  return { version: FLEET_OUTPUT_VERSION, platform: args.platform, proxies, tenants };
}

/** FleetOutput as the program builds it: the same shape, with outputs at the leaves. */
export interface FleetOutputInputs {
  version: typeof FLEET_OUTPUT_VERSION;
  platform: string;
  proxies: Partial<Record<Engine, { endpoints: pulumi.Output<string[]> }>>;
  tenants: Record<string, Record<string, Omit<FleetTenantDatabase, "connectionString"> & { connectionString?: pulumi.Output<string> }>>;
}

/** The `tenantDatabases` stack output: per tenant → database, where it is and its route's state.
 * Its connection string is in `fleet` only (each secret once in the stack's outputs). */
export function tenantPlacements(tenantDatabases: Record<string, Record<string, TenantDatabaseOutput>>) {
  return Object.fromEntries(
    Object.entries(tenantDatabases).map(([tenant, dbs]) => [
      tenant,
      Object.fromEntries(
        Object.entries(dbs).map(([database, d]) => [
          database,
          { engine: d.engine, isolation: d.isolation, region: d.region, server: d.server, ...(d.status ? { status: d.status, epoch: d.epoch } : {}) },
        ]),
      ),
    ]),
  );
}
