/**
 * A platform realises a "server" (a shared cluster's node or a dedicated VM) and, later, a
 * "proxy host". `local` runs real database server processes on this machine; `aws` and `gcp`
 * come with their own issue.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../../dynamic-providers/engines";

export type ServerRole = "shared" | "dedicated";

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

export interface Platform {
  readonly name: string;
  server(req: ServerRequest, parent: pulumi.Resource): PlatformServer;
}
