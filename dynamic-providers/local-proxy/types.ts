import type * as pulumi from "@pulumi/pulumi";

/** Public inputs of a LocalProxy. */
export interface LocalProxyArgs {
  /** Proxy id, unique in the fleet (`proxy-1`); names its folder and its catalog row. Changing it replaces the proxy. */
  proxyId: pulumi.Input<string>;
  /** Stack the proxy belongs to: its folder lives under `.tenantfleet/<stack>/proxies/`. Changing it replaces the proxy. */
  stack: pulumi.Input<string>;
  /** `postgres://…` of the control catalog (secret). Changing it restarts the proxy on the same ports. */
  catalogUrl: pulumi.Input<string>;
  /** Also serve the MySQL protocol (the fleet has MariaDB/MySQL tenant databases). Turning it on
   * restarts the proxy once, on the same ports, with a MySQL port of its own. */
  mysql?: pulumi.Input<boolean>;
  /** Also serve the Redis protocol (the fleet has Redis tenant databases); as `mysql`. */
  redis?: pulumi.Input<boolean>;
}

export interface LocalProxyInputs {
  proxyId: string;
  stack: string;
  catalogUrl: string;
  mysql?: boolean;
  redis?: boolean;
}

export interface LocalProxyOutputs extends LocalProxyInputs {
  host: string;
  /** Client port; stable for the proxy's life (reserved like a server's). */
  port: number;
  /** MySQL-protocol client port, when `mysql` is on; stable for the proxy's life. */
  mysqlPort?: number;
  /** Redis-protocol client port, when `redis` is on; stable for the proxy's life. */
  redisPort?: number;
  /** Admin port: /metrics and /healthz. */
  adminPort: number;
  dir: string;
  state: "running" | "stopped";
}
