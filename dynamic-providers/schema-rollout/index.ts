/**
 * SchemaSet and SchemaRollout resources (types.ts says how they divide the work). A Fleet makes one
 * of each per database name the stack config gives a migrations folder.
 */
import * as pulumi from "@pulumi/pulumi";
import { ProjectResource, urnOnly } from "../lazy-provider";
import type { MigrationFile, MigrationRef, RolloutPolicy, SchemaEngine } from "./types";

export type { MigrationFile, RolloutPolicy, SchemaEngine } from "./types";

export const SCHEMA_ROLLOUT_TYPE = "pulumi-nodejs:dynamic/tenantfleet:SchemaRollout";

type Address = { host: string; port: number; adminUser: string };
type Catalog = Address & { database: string; tls?: true };
type Bastion = { bastion?: pulumi.Input<{ host: string; port: number; username: string; hostKeyFingerprint?: string }>; bastionPrivateKey?: pulumi.Input<string> };

export interface SchemaSetArgs extends Bastion {
  database: string;
  engine: SchemaEngine;
  files: MigrationFile[];
  seed?: MigrationFile;
  catalog: pulumi.Input<Catalog>;
  catalogPassword: pulumi.Input<string>;
}

export class SchemaSet extends ProjectResource {
  declare readonly files: pulumi.Output<MigrationRef[]>;
  constructor(name: string, args: SchemaSetArgs, opts?: pulumi.CustomResourceOptions) {
    super("SchemaSet", "dynamic-providers/schema-rollout/schema-set.ts", name, { ...args }, { ...opts, additionalSecretOutputs: ["catalogPassword"] });
  }
}

export interface SchemaRolloutArgs extends Bastion {
  database: string;
  engine: SchemaEngine;
  files: MigrationRef[];
  tenants: string[];
  policy: RolloutPolicy;
  servers: pulumi.Input<Record<string, Address>>;
  serverPasswords: pulumi.Input<Record<string, string>>;
  catalog: pulumi.Input<Catalog>;
  catalogPassword: pulumi.Input<string>;
}

export class SchemaRollout extends ProjectResource {
  /** The head every tenant database of the name reached. */
  declare readonly head: pulumi.Output<string | null>;
  /** What this `pulumi up` does, in words (shown by `preview --diff`). */
  declare readonly plan: pulumi.Output<string>;
  constructor(name: string, args: SchemaRolloutArgs, opts?: pulumi.CustomResourceOptions) {
    const resourceUrn = pulumi.createUrn(name, SCHEMA_ROLLOUT_TYPE, opts?.parent ? urnOnly(opts.parent) : undefined);
    super("SchemaRollout", "dynamic-providers/schema-rollout/provider.ts", name, { ...args, resourceUrn, plan: undefined, head: undefined }, { ...opts, additionalSecretOutputs: ["serverPasswords", "catalogPassword"] });
  }
}
