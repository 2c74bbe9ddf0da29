import type * as pulumi from "@pulumi/pulumi";
import type { BastionInputs } from "../tunnel/ssh-tunnel";

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
  /** Cloud platforms: the SSH bastion this provider reaches the (private) catalog through. */
  bastion?: pulumi.Input<{ host: string; port: number; username: string; hostKeyFingerprint?: string }>;
  /** Secret. */
  bastionPrivateKey?: pulumi.Input<string>;
}

export interface ControlCatalogInputs extends BastionInputs {
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
