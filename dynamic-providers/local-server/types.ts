import type * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../engines";

/** `catalog`: the server holding the control catalog (no tenant database). */
export type ServerRole = "shared" | "dedicated" | "catalog";
export type ServerState = "running" | "stopped" | "missing";

/** Public inputs of a LocalServer. */
export interface LocalServerArgs {
  /** Database engine. Changing it replaces the server (a new, empty one). */
  engine: pulumi.Input<Engine>;
  /** Logical server name, e.g. `shared-postgres-eu-west`; names its folder. Changing it replaces the server. */
  serverName: pulumi.Input<string>;
  /** Stack the server belongs to: its folder lives under `.tenantfleet/<stack>/`. Changing it replaces the server. */
  stack: pulumi.Input<string>;
  /** Region label (local servers all run on this machine). Changing it is an in-place update. */
  region: pulumi.Input<string>;
  /** Shared (many tenants) or dedicated (one tenant database). In-place update. */
  role: pulumi.Input<ServerRole>;
  /** For dedicated servers: the tenant and database it holds. In-place update. */
  tenant?: pulumi.Input<string>;
  database?: pulumi.Input<string>;
  /** Redis: the instance's maxmemory, MB. In-place update, applied to the running instance. */
  maxmemoryMb?: pulumi.Input<number>;
}

/** Resolved inputs, as the provider sees them. */
export interface LocalServerInputs {
  engine: Engine;
  serverName: string;
  stack: string;
  region: string;
  role: ServerRole;
  tenant?: string;
  database?: string;
  maxmemoryMb?: number;
}

export interface LocalServerOutputs extends LocalServerInputs {
  /** Folder name under `.tenantfleet/<stack>/servers/`: serverName plus a random suffix, so a
   * replacement can be created before the old server is deleted. */
  dirName: string;
  /** Absolute folder of the server (informational; recomputed on read). */
  dir: string;
  host: string;
  port: number;
  serverId: number;
  adminUser: string;
  /** Secret output. */
  adminPassword: string;
  version: string;
  state: ServerState;
}
