/** ProxyFleet — the proxy hosts every application connects through, following the control catalog. */
import * as pulumi from "@pulumi/pulumi";
import type { Platform, PlatformProxy } from "./platforms";

export interface ProxyFleetArgs {
  /** Number of proxy hosts (`proxy-1` … `proxy-N`). Default 2. Adding one is safe at any time;
   * removing one ends its sessions at their next idle point. */
  replicas?: number;
  /** Secret: `postgres://…` of the control catalog. */
  catalogUrl: pulumi.Output<string>;
  platform: Platform;
}

export interface ProxyFleetResult {
  proxies: PlatformProxy[];
  /** `host:port` of every proxy, in order. */
  endpoints: pulumi.Output<string[]>;
}

export function createProxyFleet(parent: pulumi.ComponentResource, args: ProxyFleetArgs): ProxyFleetResult {
  const replicas = args.replicas ?? 2;
  const proxies = Array.from({ length: replicas }, (_, i) => args.platform.proxyHost({ proxyId: `proxy-${i + 1}`, catalogUrl: args.catalogUrl }, parent));
  const endpoints = pulumi.all(proxies.map((p) => pulumi.interpolate`${p.host}:${p.port}`));
  return { proxies, endpoints };
}

export class ProxyFleet extends pulumi.ComponentResource {
  /** `host:port` of every proxy (the PostgreSQL listeners), in order. */
  public readonly endpoints!: pulumi.Output<string[]>;
  /** Admin endpoints (`host:port` serving /metrics and /healthz), in order. */
  public readonly adminEndpoints!: pulumi.Output<string[]>;

  constructor(name: string, args: ProxyFleetArgs, opts?: pulumi.ComponentResourceOptions) {
    super("tenantfleet:index:ProxyFleet", name, {}, opts);
    const r = createProxyFleet(this, args);
    this.endpoints = r.endpoints;
    this.adminEndpoints = pulumi.all(r.proxies.map((p) => pulumi.interpolate`${p.host}:${p.adminPort}`));
    this.registerOutputs({ endpoints: this.endpoints, adminEndpoints: this.adminEndpoints });
  }
}
