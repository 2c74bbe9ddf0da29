/** ControlCatalog — the control catalog database and its schema (see provider.ts). */
import * as pulumi from "@pulumi/pulumi";
import { ProjectResource } from "../lazy-provider";
import type { ControlCatalogArgs } from "./types";

export type { ControlCatalogArgs } from "./types";

export class ControlCatalog extends ProjectResource {
  declare readonly host: pulumi.Output<string>;
  declare readonly port: pulumi.Output<number>;
  declare readonly adminUser: pulumi.Output<string>;
  declare readonly database: pulumi.Output<string>;
  /** Secret. */
  declare readonly adminPassword: pulumi.Output<string>;
  /** Secret: `postgres://user:password@host:port/database`. */
  declare readonly url: pulumi.Output<string>;
  declare readonly schemaVersion: pulumi.Output<number>;

  constructor(name: string, args: ControlCatalogArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "ControlCatalog",
      "dynamic-providers/control-catalog/provider.ts",
      name,
      { ...args, url: undefined, schemaVersion: undefined },
      { ...opts, additionalSecretOutputs: ["adminPassword", "url", "bastionPrivateKey"] },
    );
  }
}
