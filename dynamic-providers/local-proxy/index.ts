/** LocalProxy — a real tenantfleet proxy process on this machine (see provider.ts). */
import * as pulumi from "@pulumi/pulumi";
import { ProjectResource } from "../lazy-provider";
import type { LocalProxyArgs } from "./types";

export type { LocalProxyArgs } from "./types";

export class LocalProxy extends ProjectResource {
  declare readonly proxyId: pulumi.Output<string>;
  /** 127.0.0.1. */
  declare readonly host: pulumi.Output<string>;
  /** Client port, stable for the proxy's life. */
  declare readonly port: pulumi.Output<number>;
  /** /metrics and /healthz. */
  declare readonly adminPort: pulumi.Output<number>;
  /** MySQL-protocol client port (when `mysql` is on). */
  declare readonly mysqlPort: pulumi.Output<number | undefined>;
  /** Redis-protocol client port (when `redis` is on). */
  declare readonly redisPort: pulumi.Output<number | undefined>;
  declare readonly state: pulumi.Output<"running" | "stopped">;

  constructor(name: string, args: LocalProxyArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "LocalProxy",
      "dynamic-providers/local-proxy/provider.ts",
      name,
      { ...args, host: undefined, port: undefined, adminPort: undefined, mysqlPort: undefined, redisPort: undefined, dir: undefined, state: undefined },
      { ...opts, additionalSecretOutputs: ["catalogUrl"] },
    );
  }
}
