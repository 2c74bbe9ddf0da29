/**
 * TenantDatabase — a tenant's database, its login role and its route through the proxies. A change
 * of isolation, region or server is an update: a live migration (provider.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import { ProjectResource, urnOnly } from "../lazy-provider";
import type { MigrationRecord } from "../migration/orchestrator";
import type { LiveEngine, TenantDatabaseArgs } from "./types";
import { connectionString } from "./plan";
import { passwordOf } from "./state";

export type { TenantDatabaseArgs } from "./types";

export const TENANT_DATABASE_TYPE = "pulumi-nodejs:dynamic/tenantfleet:TenantDatabase";

export class TenantDatabase extends ProjectResource {
  declare readonly tenant: pulumi.Output<string>;
  declare readonly database: pulumi.Output<string>;
  declare readonly engine: pulumi.Output<LiveEngine>;
  declare readonly isolation: pulumi.Output<"shared" | "dedicated">;
  declare readonly region: pulumi.Output<string>;
  /** The server it lives on (after the last migration). */
  declare readonly serverName: pulumi.Output<string>;
  /** Login role, `<database>__<tenant>`. */
  declare readonly role: pulumi.Output<string>;
  /** Secret: the credentials the provider logs in with and the role's password, from which the
   * connection string through the proxies is built (connectionStringOf), identical before and
   * after every migration. */
  declare readonly access: pulumi.Output<{ password?: string } | undefined>;
  /** Secret, in the state of the previous version only (it kept the role's password apart). */
  declare readonly password: pulumi.Output<string | undefined>;
  /** Secret, in the state of earlier versions only (where they kept the password). */
  declare readonly connectionString: pulumi.Output<string | undefined>;
  declare readonly backendDatabase: pulumi.Output<string>;
  declare readonly epoch: pulumi.Output<number>;
  declare readonly status: pulumi.Output<string>;
  /** The last migration: from, to, method, phase timings, pause, verification, backup location. */
  declare readonly lastMigration: pulumi.Output<MigrationRecord | null>;
  /** What this `pulumi up` does with the database, in words (shown by `preview --diff`). */
  declare readonly plan: pulumi.Output<string>;

  constructor(name: string, args: Omit<TenantDatabaseArgs, "resourceUrn">, opts?: pulumi.CustomResourceOptions) {
    const resourceUrn = pulumi.createUrn(name, TENANT_DATABASE_TYPE, opts?.parent ? urnOnly(opts.parent) : undefined);
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
        password: undefined,
        connectionString: undefined,
        status: undefined,
        lastMigration: undefined,
        retained: undefined,
        access: undefined,
      },
      { ...opts, additionalSecretOutputs: ["access", "retained"] },
    );
  }
}

/**
 * A TenantDatabase's connection string through `proxyEndpoints` (secret). The program builds it, so
 * the resource depends on no proxy: its state names neither their endpoints nor their URNs, and a
 * change of proxies changes the stack's outputs only. States of earlier versions keep the password
 * in an output of its own or inside the connection string they stored; it is read from there
 * until their next update.
 */
export function connectionStringOf(r: TenantDatabase, proxyEndpoints: pulumi.Input<string[]>, clientDatabase: string, engine: LiveEngine = "postgres"): pulumi.Output<string> {
  return pulumi.secret(
    pulumi.all([r.role, r.access, r.password, r.connectionString, proxyEndpoints]).apply(([role, access, password, earlier, endpoints]) =>
      connectionString(role, access?.password ?? password ?? passwordOf(earlier!), endpoints, clientDatabase, engine === "postgres" ? "postgresql" : engine),
    ),
  );
}
