/**
 * Pure: which servers a fleet spec needs. One shared cluster per (engine, region) that holds at
 * least one shared tenant database; one dedicated server per dedicated tenant database, named
 * with its region so a region change provisions the new server before the old one goes away.
 *
 * Redis: `REPLICAOF` copies a whole instance, so each Redis tenant database is an instance of its
 * own, on a shared host too. A shared Redis cluster is a host (its own instance, the one stacks
 * had before instances existed, kept so they upgrade without losing a key) with one instance per
 * shared tenant database: `shared-redis-<region>--<tenant>-<database>`.
 */
import { isEngine, type Engine } from "../dynamic-providers/engines";
import type { FleetSpec, TenantDatabaseSpec } from "../stacks/config";
import { DEFAULT_REDIS_MEMORY_MB } from "../dynamic-providers/engines/redis/settings";

export interface SharedClusterPlan {
  name: string;
  engine: Engine;
  region: string;
  tenantDatabases: TenantDatabaseSpec[];
  /** Engines with an instance per tenant database (Redis): the instances on this host. */
  instances: InstancePlan[];
}

export interface InstancePlan {
  name: string;
  tenant: string;
  database: string;
  /** Its maxmemory, MB. */
  memoryMb: number;
}

/** Engines whose every tenant database is a server instance of its own. */
export const instancePerDatabase = (engine: Engine) => engine === "redis";

export interface DedicatedServerPlan {
  name: string;
  engine: Engine;
  region: string;
  tenant: string;
  database: string;
  /** Redis: the instance's maxmemory, MB. */
  memoryMb?: number;
}

export interface FleetPlan {
  sharedClusters: SharedClusterPlan[];
  dedicatedServers: DedicatedServerPlan[];
}

export const sharedClusterName = (engine: Engine, region: string) => `shared-${engine}-${region}`;
/** Tenant and database names never contain "-", so the "-" separators keep this unambiguous. */
export const dedicatedServerName = (tenant: string, database: string, region: string) =>
  `dedicated-${tenant}-${database}-${region}`;

/** A Redis tenant database's own instance on its region's shared host. The "--" is unambiguous: tenant and database names have no "-". */
export const sharedInstanceName = (engine: Engine, region: string, tenant: string, database: string) => `${sharedClusterName(engine, region)}--${tenant}-${database}`;

/** The server a tenant database belongs on (for Redis on a shared host: its instance, on the
 * platforms that run them — `instances` false: the host itself, as before instances existed). */
export function serverNameOf(d: Pick<TenantDatabaseSpec, "engine" | "isolation" | "region" | "tenant" | "database">, instances = true): string {
  if (d.isolation === "dedicated") return dedicatedServerName(d.tenant, d.database, d.region);
  return instances && instancePerDatabase(d.engine) ? sharedInstanceName(d.engine, d.region, d.tenant, d.database) : sharedClusterName(d.engine, d.region);
}

/** A server name read back: the inverse of `sharedClusterName` and `dedicatedServerName`. */
export type ParsedServerName =
  | { isolation: "shared"; engine: Engine; region: string; tenant?: string; database?: string }
  | { isolation: "dedicated"; tenant: string; database: string; region: string };

/** Parse a server name made by this module; undefined for any other name (e.g. `control-catalog`). */
export function parseServerName(name: string): ParsedServerName | undefined {
  const instance = /^shared-([a-z]+)-([a-z0-9-]+?)--([a-z][a-z0-9_]*)-([a-z][a-z0-9_]*)$/.exec(name);
  if (instance && isEngine(instance[1])) return { isolation: "shared", engine: instance[1], region: instance[2]!, tenant: instance[3]!, database: instance[4]! };
  const shared = /^shared-([a-z]+)-([a-z0-9-]+)$/.exec(name);
  if (shared && isEngine(shared[1])) return { isolation: "shared", engine: shared[1], region: shared[2]! };
  const dedicated = /^dedicated-([a-z][a-z0-9_]*)-([a-z][a-z0-9_]*)-([a-z0-9-]+)$/.exec(name);
  if (dedicated) return { isolation: "dedicated", tenant: dedicated[1]!, database: dedicated[2]!, region: dedicated[3]! };
  return undefined;
}

/** `instances`: the platform runs an instance per Redis tenant database on a shared host (every platform does; false plans the layout from before instances). */
export function planFleet(spec: FleetSpec, instances = true): FleetPlan {
  const shared = new Map<string, SharedClusterPlan>();
  const dedicated: DedicatedServerPlan[] = [];
  for (const db of spec.databases) {
    if (db.isolation === "shared") {
      const name = sharedClusterName(db.engine, db.region);
      const plan = shared.get(name) ?? { name, engine: db.engine, region: db.region, tenantDatabases: [], instances: [] };
      plan.tenantDatabases.push(db);
      if (instances && instancePerDatabase(db.engine)) plan.instances.push({ name: serverNameOf(db), tenant: db.tenant, database: db.database, memoryMb: db.memoryMb ?? DEFAULT_REDIS_MEMORY_MB });
      shared.set(name, plan);
    } else {
      dedicated.push({
        name: dedicatedServerName(db.tenant, db.database, db.region),
        engine: db.engine,
        region: db.region,
        tenant: db.tenant,
        database: db.database,
        ...(instances && instancePerDatabase(db.engine) ? { memoryMb: db.memoryMb ?? DEFAULT_REDIS_MEMORY_MB } : {}),
      });
    }
  }
  const byName = <T extends { name: string }>(a: T, b: T) => a.name.localeCompare(b.name);
  return { sharedClusters: [...shared.values()].sort(byName), dedicatedServers: dedicated.sort(byName) };
}
