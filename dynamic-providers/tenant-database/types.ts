import type * as pulumi from "@pulumi/pulumi";
import type { BackupBucket } from "../backups/store";
import type { MigrationRecord } from "../migration/orchestrator";

/** Engines whose tenant databases TenantDatabase manages (with live migration). */
export type LiveEngine = "postgres" | "mysql" | "redis";
export const LIVE_ENGINES: readonly LiveEngine[] = ["postgres", "mysql", "redis"];

/** Where a tenant database's server is and how the migration engine logs into it. */
export interface ServerRef {
  /** Logical server name (`shared-postgres-eu-west`, `dedicated-acme-app-eu-west`). */
  name: string;
  host: string;
  port: number;
  adminUser: string;
}

export interface CatalogRef {
  host: string;
  port: number;
  adminUser: string;
  database: string;
  /** Connect with TLS (a managed catalog that requires it, e.g. RDS PostgreSQL 15+). Encrypted,
   * not verified: the tunnel's loopback end never matches the certificate's name. */
  tls?: boolean;
}

/** Public inputs of a TenantDatabase. */
export interface TenantDatabaseArgs {
  /** Tenant name. Cannot change (refused in check: a rename would create an empty database). */
  tenant: pulumi.Input<string>;
  /** Database name within the tenant. Cannot change (as tenant). */
  database: pulumi.Input<string>;
  /** Engine. Cannot change (refused in check). */
  engine: pulumi.Input<LiveEngine>;
  /** `shared` or `dedicated`. Changing it is an update: a live migration to the new server. */
  isolation: pulumi.Input<"shared" | "dedicated">;
  /** Region. Changing it is an update: a live migration to the new server. */
  region: pulumi.Input<string>;
  /** Name of the server the database belongs on (known at preview). A different server is an update: a live migration. */
  serverName: pulumi.Input<string>;
  /** How to reach that server. */
  server: pulumi.Input<Omit<ServerRef, "name">>;
  /** Admin password of `server` (secret). */
  serverAdminPassword: pulumi.Input<string>;
  /** The control catalog (routes, pauses, migration records). */
  catalog: pulumi.Input<CatalogRef>;
  /** Admin password of the catalog (secret). */
  catalogPassword: pulumi.Input<string>;
  /** Stack name: the local platform keeps backups under `.tenantfleet/<stack>/backups/`. */
  stack: pulumi.Input<string>;
  /** Platform: where safety backups go and how free disk is read. */
  platform: pulumi.Input<"local" | "aws" | "gcp">;
  /** Cloud platforms: the SSH bastion this provider reaches servers and catalog through. */
  bastion?: pulumi.Input<{ host: string; port: number; username: string; hostKeyFingerprint?: string }>;
  /** Secret: the bastion's private key. */
  bastionPrivateKey?: pulumi.Input<string>;
  /** Cloud platforms: the bucket safety backups are moved to (default: they stay on this machine). */
  backupBucket?: pulumi.Input<BackupBucket>;
  /** Hours a fenced source copy and the safety backup are kept after a migration. Default 24. */
  rollbackWindowHours?: pulumi.Input<number>;
  /** This resource's own URN, so the provider can attach progress lines to it. */
  resourceUrn: pulumi.Input<string>;
  /** How the proxies lend server connections (absent: `session`, as before pools existed). */
  pool?: pulumi.Input<TenantDatabasePool>;
}

export interface TenantDatabasePool {
  mode: "session" | "transaction";
  /** `transaction` mode: server connections per proxy. */
  size: number;
  /** Connections each proxy may open to the server, over all its tenant databases. */
  serverBudget: number;
}

export interface TenantDatabaseInputs {
  tenant: string;
  database: string;
  engine: LiveEngine;
  isolation: "shared" | "dedicated";
  region: string;
  serverName: string;
  server: Omit<ServerRef, "name">;
  serverAdminPassword: string;
  catalog: CatalogRef;
  catalogPassword: string;
  /** Earlier versions only: the proxies the stored connection string names (now built by the
   * program, components/tenant.ts, so a TenantDatabase depends on no proxy). */
  proxyEndpoints?: string[];
  stack: string;
  platform: "local" | "aws" | "gcp";
  bastion?: { host: string; port: number; username: string; hostKeyFingerprint?: string };
  bastionPrivateKey?: string;
  backupBucket?: BackupBucket;
  rollbackWindowHours: number;
  /** Taken out by `check` and given back to `create` and `update` (state.ts); stored by the previous version's outputs only. */
  resourceUrn?: string;
  pool?: TenantDatabasePool;
  /** Set by check: what `pulumi up` will do, in words (shown by `preview --diff`). */
  plan: string;
}

/** A copy kept for the rollback window after a migration. */
export type RetainedCopy =
  | {
      kind: "fenced_copy";
      server: ServerRef;
      adminPassword: string;
      backendDatabase: string;
      role: string;
      expiresAt: string;
      /** Set by `pulumi refresh` when it finds that an interrupted run committed the move away from
       * this copy: its cleanup and fence may not have run; the next update finishes them. */
      finishMove?: boolean;
      /** Kept current by reverse replication from the live copy it was moved to (PostgreSQL):
       * `stream` names it, `from` is where it reads. A move back there is a switch. */
      keptCurrent?: { stream: string; from: { server: string; backendDatabase: string } };
    }
  | { kind: "backup"; location: string; expiresAt: string };

export interface TenantDatabaseOutputs extends TenantDatabaseInputs {
  /** Login role (`<database>__<tenant>`). */
  role: string;
  /** Secret: the role's password (the program builds the connection string from it). */
  password: string;
  /** Secret: SCRAM-SHA-256 verifier the catalog and the server hold. Stored by earlier versions
   * only; the catalog's route has it. */
  scramVerifier?: string;
  /** Database name on the current server. */
  backendDatabase: string;
  /** Route epoch in the catalog (bumped by every migration). */
  epoch: number;
  /** Earlier versions only (secret): `postgresql://role:password@proxy1,proxy2/<database>__<tenant>`,
   * where they kept the password. The program builds it now (connectionStringOf). */
  connectionString?: string;
  /** ready | failed (a failed migration leaves the previous placement serving) | migrating (a run
   * was interrupted mid-move: the update cleans up and moves again) | finishing (refresh found a
   * committed move whose cleanup the update finishes). */
  status: string;
  lastMigration: MigrationRecord | null;
  /** Secret: fenced copies and backups kept for the rollback window. */
  retained: RetainedCopy[];
}
