/**
 * LocalServer — a real database server process (PostgreSQL, MariaDB or Redis) that stands in for
 * a VM on the local platform. See provider.ts for the lifecycle.
 */
import * as pulumi from "@pulumi/pulumi";
import type { Engine } from "../engines";
import { ProjectResource } from "../lazy-provider";
import type { LocalServerArgs, ServerRole, ServerState } from "./types";

export type { LocalServerArgs } from "./types";

export class LocalServer extends ProjectResource {
  declare readonly engine: pulumi.Output<Engine>;
  declare readonly serverName: pulumi.Output<string>;
  declare readonly region: pulumi.Output<string>;
  declare readonly role: pulumi.Output<ServerRole>;
  /** 127.0.0.1 for local servers. */
  declare readonly host: pulumi.Output<string>;
  /** Stable for the server's life (kept across restarts). */
  declare readonly port: pulumi.Output<number>;
  declare readonly adminUser: pulumi.Output<string>;
  /** Generated at create; a secret output, never in plain text in the state. */
  declare readonly adminPassword: pulumi.Output<string>;
  declare readonly version: pulumi.Output<string>;
  declare readonly dir: pulumi.Output<string>;
  declare readonly state: pulumi.Output<ServerState>;

  constructor(name: string, args: LocalServerArgs, opts?: pulumi.CustomResourceOptions) {
    const outputs = {
      dirName: undefined,
      dir: undefined,
      host: undefined,
      port: undefined,
      serverId: undefined,
      adminUser: undefined,
      adminPassword: undefined,
      version: undefined,
      state: undefined,
    };
    super(
      "LocalServer",
      "dynamic-providers/local-server/provider.ts",
      name,
      { tenant: undefined, database: undefined, ...args, ...outputs },
      { ...opts, additionalSecretOutputs: ["adminPassword"] },
    );
  }
}
