/** SharedCluster — the server(s) that hold many tenants' databases of one engine in one region. */
import * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../dynamic-providers/engines";
import type { Platform, PlatformServer } from "./platforms";

export interface SharedClusterArgs {
  /** Database engine of every tenant database on the cluster. Changing it replaces the cluster. */
  engine: Engine;
  /** Region the cluster runs in. Changing it replaces the cluster (tenants move by migration). */
  region: string;
  /** Platform that realises the servers (local processes, EC2, Compute Engine). */
  platform: Platform;
  /** Redis: the instance of each tenant database on this host (fleet-plan.ts). */
  instances?: { name: string; tenant: string; database: string; memoryMb: number }[];
}

export interface SharedClusterResult {
  engine: pulumi.Output<Engine>;
  region: pulumi.Output<string>;
  /** The cluster's primary: where tenant databases are created (Redis: the host's own instance). */
  primary: PlatformServer;
  /** Redis: each tenant database's instance, by server name. */
  instances: Record<string, PlatformServer>;
}

export function createSharedCluster(
  name: string,
  parent: pulumi.ComponentResource,
  args: SharedClusterArgs,
): SharedClusterResult {
  const host = { serverName: name, engine: args.engine, region: args.region, role: "shared" as const };
  const primary = args.platform.server(host, parent);
  const requested = (args.instances ?? []).map((i) => ({ name: i.name, tenant: i.tenant, database: i.database, maxmemoryMb: i.memoryMb }));
  let instances: Record<string, PlatformServer> = {};
  if (args.platform.instances && args.platform.redisInstances && args.instances) {
    instances = args.platform.instances({ host, hostServer: primary, instances: requested }, parent);
  } else {
    for (const i of requested) {
      instances[i.name] = args.platform.server({ serverName: i.name, engine: args.engine, region: args.region, role: "shared", tenant: i.tenant, database: i.database, maxmemoryMb: i.maxmemoryMb }, parent);
    }
  }
  return { engine: pulumi.output(args.engine), region: pulumi.output(args.region), primary, instances };
}

export class SharedCluster extends pulumi.ComponentResource {
  /** Engine of the cluster. */
  public readonly engine!: pulumi.Output<Engine>;
  /** Region of the cluster. */
  public readonly region!: pulumi.Output<string>;
  /** Host of the primary server. */
  public readonly host!: pulumi.Output<string>;
  /** Port of the primary server; stable for its life. */
  public readonly port!: pulumi.Output<number>;
  /** Admin account of the primary server. */
  public readonly adminUser!: pulumi.Output<string>;
  /** Admin password (secret). */
  public readonly adminPassword!: pulumi.Output<string>;
  /** Redis: each tenant database's instance on this host, by server name. */
  public readonly instances!: Record<string, PlatformServer>;

  constructor(name: string, args: SharedClusterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tenantfleet:index:SharedCluster", name, {}, opts);
    const r = createSharedCluster(name, this, args);
    this.engine = r.engine;
    this.region = r.region;
    this.host = r.primary.host;
    this.port = r.primary.port;
    this.adminUser = r.primary.adminUser;
    this.adminPassword = r.primary.adminPassword;
    this.instances = r.instances;
    this.registerOutputs({
      engine: this.engine,
      region: this.region,
      host: this.host,
      port: this.port,
      adminUser: this.adminUser,
      adminPassword: this.adminPassword,
    });
  }
}
