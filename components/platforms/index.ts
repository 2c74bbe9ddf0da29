/**
 * A platform realises a "server" (a shared cluster's node or a dedicated VM) and, later, a
 * "proxy host". `local` runs real database server processes on this machine; `aws` and `gcp`
 * come with their own issue.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../../dynamic-providers/engines";

export type ServerRole = "shared" | "dedicated" | "catalog";

export interface ServerRequest {
  /** Logical server name, unique in the stack, e.g. `shared-postgres-eu-west`. */
  serverName: string;
  engine: Engine;
  region: string;
  role: ServerRole;
  tenant?: string;
  database?: string;
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
}

export interface ProxyHostRequest {
  /** `proxy-1`, `proxy-2`, …: names the host and its row in the catalog. */
  proxyId: string;
  /** Secret. */
  catalogUrl: pulumi.Output<string>;
}

/** One proxy host running the proxy from `proxy/`. */
export interface PlatformProxy {
  host: pulumi.Output<string>;
  /** Client port (PostgreSQL protocol). */
  port: pulumi.Output<number>;
  /** /metrics and /healthz. */
  adminPort: pulumi.Output<number>;
}

export interface Platform {
  readonly name: string;
  server(req: ServerRequest, parent: pulumi.Resource): PlatformServer;
  controlCatalog(parent: pulumi.Resource): PlatformCatalog;
  proxyHost(req: ProxyHostRequest, parent: pulumi.Resource): PlatformProxy;
}
