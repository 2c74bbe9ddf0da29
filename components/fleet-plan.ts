/**
 * Pure: which servers a fleet spec needs. One shared cluster per (engine, region) that holds at
 * least one shared tenant database; one dedicated server per dedicated tenant database, named
 * with its region so a region change provisions the new server before the old one goes away.
 */
import { isEngine, type Engine } from "../dynamic-providers/engines";
import type { FleetSpec, TenantDatabaseSpec } from "../stacks/config";

export interface SharedClusterPlan {
  name: string;
  engine: Engine;
  region: string;
  tenantDatabases: TenantDatabaseSpec[];
}

export interface DedicatedServerPlan {
  name: string;
  engine: Engine;
  region: string;
  tenant: string;
  database: string;
}

export interface FleetPlan {
  sharedClusters: SharedClusterPlan[];
  dedicatedServers: DedicatedServerPlan[];
}

export const sharedClusterName = (engine: Engine, region: string) => `shared-${engine}-${region}`;
/** Tenant and database names never contain "-", so the "-" separators keep this unambiguous. */
export const dedicatedServerName = (tenant: string, database: string, region: string) =>
  `dedicated-${tenant}-${database}-${region}`;

/** A server name read back: the inverse of `sharedClusterName` and `dedicatedServerName`. */
export type ParsedServerName =
  | { isolation: "shared"; engine: Engine; region: string }
  | { isolation: "dedicated"; tenant: string; database: string; region: string };

/** Parse a server name made by this module; undefined for any other name (e.g. `control-catalog`). */
export function parseServerName(name: string): ParsedServerName | undefined {
  const shared = /^shared-([a-z]+)-([a-z0-9-]+)$/.exec(name);
  if (shared && isEngine(shared[1])) return { isolation: "shared", engine: shared[1], region: shared[2]! };
  const dedicated = /^dedicated-([a-z][a-z0-9_]*)-([a-z][a-z0-9_]*)-([a-z0-9-]+)$/.exec(name);
  if (dedicated) return { isolation: "dedicated", tenant: dedicated[1]!, database: dedicated[2]!, region: dedicated[3]! };
  return undefined;
}

export function planFleet(spec: FleetSpec): FleetPlan {
  const shared = new Map<string, SharedClusterPlan>();
  const dedicated: DedicatedServerPlan[] = [];
  for (const db of spec.databases) {
    if (db.isolation === "shared") {
      const name = sharedClusterName(db.engine, db.region);
      const plan = shared.get(name) ?? { name, engine: db.engine, region: db.region, tenantDatabases: [] };
      plan.tenantDatabases.push(db);
      shared.set(name, plan);
    } else {
      dedicated.push({
        name: dedicatedServerName(db.tenant, db.database, db.region),
        engine: db.engine,
        region: db.region,
        tenant: db.tenant,
        database: db.database,
      });
    }
  }
  const byName = <T extends { name: string }>(a: T, b: T) => a.name.localeCompare(b.name);
  return { sharedClusters: [...shared.values()].sort(byName), dedicatedServers: dedicated.sort(byName) };
}
