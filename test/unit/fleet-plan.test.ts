import { describe, expect, it } from "vitest";
import { planFleet } from "../../components/fleet-plan";
import type { FleetSpec } from "../../stacks/config";

const spec: FleetSpec = {
  platform: "local",
  proxyReplicas: 2,
  rollbackWindowHours: 24,
  protectTenantDatabases: true,
  redisHostMemoryMb: 4096,
  regions: ["eu-west", "us-east"],
  databases: [
    { tenant: "acme", database: "app", engine: "postgres", isolation: "dedicated", region: "eu-west" },
    { tenant: "acme", database: "cache", engine: "redis", isolation: "shared", region: "eu-west" },
    { tenant: "globex", database: "app", engine: "postgres", isolation: "shared", region: "eu-west" },
    { tenant: "initech", database: "app", engine: "postgres", isolation: "shared", region: "eu-west" },
    { tenant: "initech", database: "shop", engine: "mysql", isolation: "shared", region: "us-east" },
  ],
};

describe("planFleet", () => {
  it("makes one shared cluster per engine and region in use, holding its tenant databases", () => {
    const plan = planFleet(spec);
    expect(plan.sharedClusters.map((c) => [c.name, c.tenantDatabases.map((d) => `${d.tenant}/${d.database}`)])).toEqual([
      ["shared-mysql-us-east", ["initech/shop"]],
      ["shared-postgres-eu-west", ["globex/app", "initech/app"]],
      ["shared-redis-eu-west", ["acme/cache"]],
    ]);
  });

  it("gives each Redis tenant database an instance of its own on its shared host, with its memory; a platform without instances keeps the host alone", () => {
    const withMemory = { ...spec, databases: [...spec.databases, { tenant: "globex", database: "cache", engine: "redis" as const, isolation: "shared" as const, region: "eu-west", memoryMb: 1024 }] };
    expect(planFleet(withMemory).sharedClusters.find((c) => c.engine === "redis")!.instances).toEqual([
      { name: "shared-redis-eu-west--acme-cache", tenant: "acme", database: "cache", memoryMb: 256 },
      { name: "shared-redis-eu-west--globex-cache", tenant: "globex", database: "cache", memoryMb: 1024 },
    ]);
    expect(planFleet(spec).sharedClusters.filter((c) => c.engine !== "redis").every((c) => c.instances.length === 0)).toBe(true);
    expect(planFleet(withMemory, false).sharedClusters.find((c) => c.engine === "redis")!.instances).toEqual([]);
    const dedicated = { ...spec, databases: [{ tenant: "acme", database: "cache", engine: "redis" as const, isolation: "dedicated" as const, region: "eu-west", memoryMb: 512 }] };
    expect(planFleet(dedicated).dedicatedServers).toEqual([{ name: "dedicated-acme-cache-eu-west", engine: "redis", region: "eu-west", tenant: "acme", database: "cache", memoryMb: 512 }]);
  });

  it("makes one dedicated server per dedicated tenant database, named with its region", () => {
    expect(planFleet(spec).dedicatedServers).toEqual([
      { name: "dedicated-acme-app-eu-west", engine: "postgres", region: "eu-west", tenant: "acme", database: "app" },
    ]);
  });

  it("gives tenants whose names only differ in where the underscore falls distinct servers", () => {
    const names = planFleet({
      ...spec,
      databases: [
        { tenant: "a_b", database: "c", engine: "postgres", isolation: "dedicated", region: "eu-west" },
        { tenant: "a", database: "b_c", engine: "postgres", isolation: "dedicated", region: "eu-west" },
      ],
    }).dedicatedServers.map((d) => d.name);
    expect(new Set(names).size).toBe(2);
  });

  it("moving a database to another region plans a new dedicated server instead of renaming the old one", () => {
    const moved = planFleet({
      ...spec,
      databases: spec.databases.map((d) => (d.tenant === "acme" && d.database === "app" ? { ...d, region: "us-east" } : d)),
    });
    expect(moved.dedicatedServers.map((d) => d.name)).toEqual(["dedicated-acme-app-us-east"]);
  });
});
