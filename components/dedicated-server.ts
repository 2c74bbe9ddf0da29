/** DedicatedServer — one VM (locally: one server process) holding exactly one tenant database. */
import * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../dynamic-providers/engines";
import type { Platform, PlatformServer } from "./platforms";

export interface DedicatedServerArgs {
  /** Tenant the server belongs to. */
  tenant: string;
  /** The tenant's database it holds. */
  database: string;
  /** Database engine. Changing it replaces the server. */
  engine: Engine;
  /** Region. A region change creates a new DedicatedServer (named by region); the tenant
   * database moves to it by migration before the old one is deleted. */
  region: string;
  /** Platform that realises the server. */
  platform: Platform;
  /** Redis: the instance's maxmemory, MB (on the platforms that run an instance per tenant database). */
  memoryMb?: number;
}

export interface DedicatedServerResult {
  server: PlatformServer;
}

export function createDedicatedServer(
  name: string,
  parent: pulumi.ComponentResource,
  args: DedicatedServerArgs,
): DedicatedServerResult {
  const server = args.platform.server(
    { serverName: name, engine: args.engine, region: args.region, role: "dedicated", tenant: args.tenant, database: args.database, ...(args.memoryMb ? { maxmemoryMb: args.memoryMb } : {}) },
    parent,
  );
  return { server };
}

export class DedicatedServer extends pulumi.ComponentResource {
  /** Host of the server. */
  public readonly host!: pulumi.Output<string>;
  /** Port of the server; stable for its life. */
  public readonly port!: pulumi.Output<number>;
  /** Admin account. */
  public readonly adminUser!: pulumi.Output<string>;
  /** Admin password (secret). */
  public readonly adminPassword!: pulumi.Output<string>;

  constructor(name: string, args: DedicatedServerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tenantfleet:index:DedicatedServer", name, {}, opts);
    const { server } = createDedicatedServer(name, this, args);
    this.host = server.host;
    this.port = server.port;
    this.adminUser = server.adminUser;
    this.adminPassword = server.adminPassword;
    this.registerOutputs({ host: this.host, port: this.port, adminUser: this.adminUser, adminPassword: this.adminPassword });
  }
}
