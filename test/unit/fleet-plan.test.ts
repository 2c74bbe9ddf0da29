import { describe, expect, it } from "vitest";
import { planFleet } from "../../components/fleet-plan";
import type { FleetSpec } from "../../stacks/config";

const spec: FleetSpec = {
  platform: "local",
  proxyReplicas: 2,
  rollbackWindowHours: 24,
  protectTenantDatabases: true,
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
