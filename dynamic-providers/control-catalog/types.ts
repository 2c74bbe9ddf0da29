import type * as pulumi from "@pulumi/pulumi";

export interface ControlCatalogArgs {
  /** Server holding the catalog. Moving the catalog to another server replaces it (not supported while tenants exist). */
  serverName: pulumi.Input<string>;
  host: pulumi.Input<string>;
  port: pulumi.Input<number>;
  adminUser: pulumi.Input<string>;
  /** Secret. */
  adminPassword: pulumi.Input<string>;
  /** Database name, default `tenantfleet_catalog`. */
  database: pulumi.Input<string>;
}

export interface ControlCatalogInputs {
  serverName: string;
  host: string;
  port: number;
  adminUser: string;
  adminPassword: string;
  database: string;
}

export interface ControlCatalogOutputs extends ControlCatalogInputs {
  /** `postgres://…` with the password (secret). */
  url: string;
  schemaVersion: number;
}
