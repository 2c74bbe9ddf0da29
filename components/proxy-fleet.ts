/** ProxyFleet — the proxy hosts every application connects through, following the control catalog. */
import * as pulumi from "@pulumi/pulumi";
import type { Platform } from "./platforms";

export interface ProxyFleetArgs {
  /** Number of proxy hosts (`proxy-1` … `proxy-N`). Default 2. Adding one is safe at any time;
   * removing one ends its sessions at their next idle point. */
  replicas?: number;
  /** Secret: `postgres://…` of the control catalog. */
  catalogUrl: pulumi.Output<string>;
  platform: Platform;
  /** Serve the MySQL protocol too (the fleet has MariaDB/MySQL tenant databases). */
  mysql?: boolean;
  /** Serve the Redis protocol too (the fleet has Redis tenant databases; platforms with `redisInstances`). */
  redis?: boolean;
}

export class ProxyFleet extends pulumi.ComponentResource {
  /** `host:port` applications connect to (PostgreSQL protocol): every proxy locally, the load
   * balancer in the cloud. */
  public readonly endpoints!: pulumi.Output<string[]>;
  /** Admin endpoints (`host:port` serving /metrics and /healthz), in order. */
  public readonly adminEndpoints!: pulumi.Output<string[]>;
  /** `host:port` for the MySQL protocol, when the fleet serves it (the local platform so far). */
  public readonly mysqlEndpoints: pulumi.Output<string[]> | undefined;
  /** `host:port` for the Redis protocol, when the fleet serves it (the local platform so far). */
  public readonly redisEndpoints: pulumi.Output<string[]> | undefined;

  constructor(name: string, args: ProxyFleetArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tenantfleet:index:ProxyFleet", name, {}, opts);
    const r = args.platform.proxyFleet({ replicas: args.replicas ?? 2, catalogUrl: args.catalogUrl, mysql: !!args.mysql, redis: !!args.redis }, this);
    this.endpoints = r.endpoints;
    this.adminEndpoints = r.adminEndpoints;
    this.mysqlEndpoints = r.mysqlEndpoints;
    this.redisEndpoints = r.redisEndpoints;
    this.registerOutputs({ endpoints: this.endpoints, adminEndpoints: this.adminEndpoints, ...(r.mysqlEndpoints ? { mysqlEndpoints: r.mysqlEndpoints } : {}), ...(r.redisEndpoints ? { redisEndpoints: r.redisEndpoints } : {}) });
  }
}
