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
  /** Connect with TLS (encrypted, not verified); the url then says `sslmode=no-verify`. For managed
   * catalogs that require TLS (RDS PostgreSQL 15+ sets rds.force_ssl). */
  tls?: pulumi.Input<boolean>;
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
  tls?: boolean;
}

export interface ControlCatalogOutputs extends ControlCatalogInputs {
  /** `postgres://…` with the password (secret). */
  url: string;
  schemaVersion: number;
}
