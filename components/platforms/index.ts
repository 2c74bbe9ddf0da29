/**
 * A platform realises a "server" (a shared cluster's node or a dedicated VM), the proxy fleet and
 * the control catalog. `local` runs real processes on this machine; `aws` and `gcp` build private
 * networks, VMs configured by cloud-init (vm/), a load-balanced proxy fleet, a managed PostgreSQL
 * catalog, a backup bucket and a bastion that migrations tunnel through.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { BackupBucket } from "../../dynamic-providers/backups/store";
import type { Engine } from "../../dynamic-providers/engines";
import type { CloudSpec } from "../../stacks/cloud-config";
import type { FleetSpec } from "../../stacks/config";

/** The control catalog's logical server name and database, on every platform. */
export const CATALOG_SERVER = "control-catalog";
export const CATALOG_DATABASE = "tenantfleet_catalog";

export type ServerRole = "shared" | "dedicated" | "catalog";

export interface ServerRequest {
  /** Logical server name, unique in the stack, e.g. `shared-postgres-eu-west`. */
  serverName: string;
  engine: Engine;
  region: string;
  role: ServerRole;
  tenant?: string;
  database?: string;
  /** Redis: the instance's maxmemory, MB (a tenant database's own instance). */
  maxmemoryMb?: number;
}

/** The instances of a shared host's tenant databases (Redis: one instance per tenant database). */
export interface InstancesRequest {
  /** The host: its own server request (the shared cluster's) and what it exposes. */
  host: ServerRequest;
  hostServer: PlatformServer;
  instances: { name: string; tenant: string; database: string; maxmemoryMb: number }[];
}

/** What every platform's server exposes to components and stack outputs. */
export interface PlatformServer {
  host: pulumi.Output<string>;
  port: pulumi.Output<number>;
  adminUser: pulumi.Output<string>;
  /** Secret output. */
  adminPassword: pulumi.Output<string>;
  version: pulumi.Output<string>;
}

/** The control catalog: a PostgreSQL database of its own, never a tenant's. */
export interface PlatformCatalog {
  serverName: string;
  host: pulumi.Output<string>;
  port: pulumi.Output<number>;
  adminUser: pulumi.Output<string>;
  /** Secret. */
  adminPassword: pulumi.Output<string>;
  database: pulumi.Output<string>;
  /** Secret: postgres://… */
  url: pulumi.Output<string>;
  /** Connections to it use TLS (managed catalogs). */
  tls: boolean;
}

/** The proxies serve the MySQL protocol too: the fleet has MariaDB/MySQL tenant databases. */
export function servesMysql(spec: Pick<FleetSpec, "databases">): boolean {
  return spec.databases.some((d) => d.engine === "mysql");
}

/** The proxies serve the Redis protocol too: the fleet has Redis tenant databases. */
export function servesRedis(spec: Pick<FleetSpec, "databases">): boolean {
  return spec.databases.some((d) => d.engine === "redis");
}

export interface ProxyFleetRequest {
  /** Proxy hosts `proxy-1` … `proxy-N` (each names its row in the catalog). */
  replicas: number;
  /** Secret. */
  catalogUrl: pulumi.Output<string>;
  /** Serve the MySQL protocol too: the fleet has MariaDB/MySQL tenant databases. */
  mysql: boolean;
  /** Serve the Redis protocol too: the fleet has Redis tenant databases (platforms that run an instance per Redis tenant database). */
  redis?: boolean;
}

/** The proxy fleet as applications and operators reach it. */
export interface PlatformProxyFleet {
  /** `host:port` applications connect to (PostgreSQL protocol): one per proxy locally, the load
   * balancer in the cloud. */
  endpoints: pulumi.Output<string[]>;
  /** `host:port` of each proxy's /metrics and /healthz. */
  adminEndpoints: pulumi.Output<string[]>;
  /** `host:port` applications connect to with the MySQL protocol, when asked for and the platform serves it. */
  mysqlEndpoints?: pulumi.Output<string[]>;
  /** `host:port` applications connect to with the Redis protocol, when asked for and the platform serves it. */
  redisEndpoints?: pulumi.Output<string[]>;
}

/** How the machine running `pulumi up` reaches private servers and the catalog: an SSH bastion.
 * Absent on the local platform (everything is on loopback). */
export interface MigrationPath {
  bastion: pulumi.Output<{ host: string; port: number; username: string; hostKeyFingerprint?: string }>;
  /** Secret: the private key matching the bastion's authorized key (`tenantfleet:bastionPrivateKey`).
   * Without it the fleet still deploys; a migration then fails with a message naming the setting. */
  privateKey?: pulumi.Output<string>;
}

/** What the aws and gcp platforms are built from. */
export interface CloudPlatformArgs {
  spec: FleetSpec & { cloud: CloudSpec };
  stack: string;
  /** Secret: the key migrations use to reach the bastion (`tenantfleet:bastionPrivateKey`). */
  bastionPrivateKey?: pulumi.Output<string>;
  /** Where `proxy/` is bundled from. */
  repoRoot: string;
  parent: pulumi.Resource;
}

export interface Platform {
  readonly name: "local" | "aws" | "gcp";
  server(req: ServerRequest, parent: pulumi.Resource): PlatformServer;
  controlCatalog(parent: pulumi.Resource): PlatformCatalog;
  proxyFleet(req: ProxyFleetRequest, parent: pulumi.Resource): PlatformProxyFleet;
  /** Runs an instance per Redis tenant database on a shared host, and serves them through the proxies. */
  readonly redisInstances?: boolean;
  /** The instances on a shared host, when the platform runs them on the host's machine (the VM
   * platforms); without it each instance is a `server()` of its own (local: a process each). */
  instances?(req: InstancesRequest, parent: pulumi.Resource): Record<string, PlatformServer>;
  migrationPath?: MigrationPath;
  /** Cloud platforms: the bucket migrations move safety backups to. */
  backupBucket?: pulumi.Output<BackupBucket>;
}

/** The ControlCatalog / TenantDatabase inputs that route their connections through the bastion. */
export function viaBastion(path: MigrationPath | undefined): { bastion?: MigrationPath["bastion"]; bastionPrivateKey?: pulumi.Output<string> } {
  return path ? { bastion: path.bastion, ...(path.privateKey ? { bastionPrivateKey: path.privateKey } : {}) } : {};
}
