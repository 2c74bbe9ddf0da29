/**
 * TenantDatabase — a tenant's database, its login role and its route through the proxies. A change
 * of isolation, region or server is an update: a live migration (provider.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import { ProjectResource } from "../lazy-provider";
import type { MigrationRecord } from "../migration/orchestrator";
import type { TenantDatabaseArgs } from "./types";

export type { TenantDatabaseArgs } from "./types";

export const TENANT_DATABASE_TYPE = "pulumi-nodejs:dynamic/tenantfleet:TenantDatabase";

export class TenantDatabase extends ProjectResource {
  declare readonly tenant: pulumi.Output<string>;
  declare readonly database: pulumi.Output<string>;
  declare readonly engine: pulumi.Output<"postgres">;
  declare readonly isolation: pulumi.Output<"shared" | "dedicated">;
  declare readonly region: pulumi.Output<string>;
  /** The server it lives on (after the last migration). */
  declare readonly serverName: pulumi.Output<string>;
  /** Login role, `<database>__<tenant>`. */
  declare readonly role: pulumi.Output<string>;
  /** Secret. Through the proxies; identical before and after every migration. */
  declare readonly connectionString: pulumi.Output<string>;
  declare readonly backendDatabase: pulumi.Output<string>;
  declare readonly epoch: pulumi.Output<number>;
  declare readonly status: pulumi.Output<string>;
  /** The last migration: from, to, method, phase timings, pause, verification, backup location. */
  declare readonly lastMigration: pulumi.Output<MigrationRecord | null>;
  /** What this `pulumi up` does with the database, in words (shown by `preview --diff`). */
  declare readonly plan: pulumi.Output<string>;

  constructor(name: string, args: Omit<TenantDatabaseArgs, "resourceUrn">, opts?: pulumi.CustomResourceOptions) {
    const resourceUrn = pulumi.createUrn(name, TENANT_DATABASE_TYPE, opts?.parent);
    super(
      "TenantDatabase",
      "dynamic-providers/tenant-database/provider.ts",
      name,
      {
        ...args,
        resourceUrn,
        plan: undefined,
        role: undefined,
        backendDatabase: undefined,
        epoch: undefined,
        connectionString: undefined,
        status: undefined,
        lastMigration: undefined,
        retained: undefined,
        access: undefined,
      },
      { ...opts, additionalSecretOutputs: ["access", "connectionString", "retained"] },
    );
  }
}
